package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ExternalConfig says how to reach an external etcd cluster.
type ExternalConfig struct {
	Endpoints []string
	// CAFile, CertFile and KeyFile configure TLS; with none set the
	// endpoints must be http:// URLs.
	CAFile, CertFile, KeyFile string
}

// Connect returns a client of an external etcd cluster, after checking
// that the cluster answers within ctx.
func Connect(ctx context.Context, cfg ExternalConfig) (*clientv3.Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("--etcd-endpoints: name at least one endpoint, e.g. https://10.0.0.1:2379")
	}
	var tlsCfg *tls.Config
	if cfg.CAFile != "" || cfg.CertFile != "" || cfg.KeyFile != "" {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("--etcd-cafile: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--etcd-cafile %s: no PEM certificate in it", cfg.CAFile)
			}
			tlsCfg.RootCAs = pool
		}
		if (cfg.CertFile == "") != (cfg.KeyFile == "") {
			return nil, fmt.Errorf("--etcd-certfile and --etcd-keyfile go together: set both or neither")
		}
		if cfg.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("--etcd-certfile/--etcd-keyfile: %w", err)
			}
			tlsCfg.Certificates = []tls.Certificate{cert}
		}
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: 5 * time.Second,
		TLS:         tlsCfg,
		Logger:      zap.NewNop(),
		Context:     context.WithoutCancel(ctx),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", cfg.Endpoints, err)
	}
	checkCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.Get(checkCtx, DefaultPrefix+"\x00ping", clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd at %v does not answer: %w", cfg.Endpoints, err)
	}
	return cli, nil
}
