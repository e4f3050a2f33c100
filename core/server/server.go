// Package server runs Paddock's control-plane process: etcd (embedded, or a
// client of an external cluster), the API server and the bootstrap that a
// new cluster needs (TLS material, built-in runtime classes, the cluster
// admin's credential in DATA_DIR/admin.conf), and, as configured, the
// controllers and the cluster DNS server.
//
// Run blocks until its context ends and returns once everything it started
// has stopped.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	papi "github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/apiserver"
	"github.com/paddock-dev/paddock/core/pki"
	"github.com/paddock-dev/paddock/core/store"
)

// Config configures the control plane.
type Config struct {
	// DataDir holds etcd's data (embedded mode), TLS material, admin.conf
	// and the audit log.
	DataDir string
	// Listen is the API server's address, HOST:PORT.
	Listen string
	// EtcdEndpoints, when set, uses an external etcd cluster.
	EtcdEndpoints                         []string
	EtcdCAFile, EtcdCertFile, EtcdKeyFile string
	// EtcdClientURL, when set in embedded mode, also serves the embedded
	// etcd's client API there (for etcdctl and backups by other tools).
	EtcdClientURL string
	// TLSSANs are extra names and addresses for the serving certificate.
	TLSSANs []string
	// AuditLog is the audit log's path: "" for DATA_DIR/audit.log, "-" for
	// standard output, "off" for none.
	AuditLog string
	Log      *slog.Logger
	Version  string
	// Ready, when set, is called once the API server listens, with the
	// path of admin.conf.
	Ready func(adminConfig string)
	// Controllers configures the controllers run in this process.
	Controllers ControllerConfig
	// DNS configures the cluster DNS server run in this process (off in a
	// zero Config).
	DNS DNSConfig
	// Network is the cluster's network layout (pod, service and node port
	// ranges); empty fields take the defaults of api.NetworkConfig.
	Network papi.NetworkConfig
}

// AdminConfigPath returns where the cluster admin's client config is kept.
func AdminConfigPath(dataDir string) string { return filepath.Join(dataDir, "admin.conf") }

// Run runs the control plane until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.DataDir == "" {
		return errors.New("--data-dir: required")
	}
	cfg.Network = cfg.Network.WithDefaults()
	if err := cfg.Network.Validate(); err != nil {
		return err
	}
	if err := cfg.DNS.check(); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", cfg.Listen, err)
	}
	defer ln.Close()

	var st *store.Store
	if len(cfg.EtcdEndpoints) > 0 {
		cli, err := store.Connect(ctx, store.ExternalConfig{
			Endpoints: cfg.EtcdEndpoints, CAFile: cfg.EtcdCAFile, CertFile: cfg.EtcdCertFile, KeyFile: cfg.EtcdKeyFile,
		})
		if err != nil {
			return err
		}
		defer cli.Close()
		st = store.New(cli)
		log.Info("using external etcd", "endpoints", strings.Join(cfg.EtcdEndpoints, ","))
	} else {
		e, err := store.StartEmbedded(ctx, store.EmbeddedConfig{
			Dir:       filepath.Join(cfg.DataDir, "etcd"),
			ClientURL: cfg.EtcdClientURL,
			Logger:    log.With("component", "etcd"),
		})
		if err != nil {
			return fmt.Errorf("embedded etcd: %w", err)
		}
		defer e.Close()
		st = store.New(e.Client())
		log.Info("embedded etcd ready", "dir", filepath.Join(cfg.DataDir, "etcd"))
	}

	hosts := append([]string{}, cfg.TLSSANs...)
	if h, _, err := net.SplitHostPort(cfg.Listen); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
		hosts = append(hosts, h)
	}
	bundle, err := pki.EnsureServing(filepath.Join(cfg.DataDir, "tls"), hosts)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	server := "https://" + advertise(ln.Addr(), cfg.Listen)
	adminConf := AdminConfigPath(cfg.DataDir)
	if err := bootstrap(ctx, st, adminConf, server, string(bundle.CAPEM), log); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	ctrlClient, err := controllerClient(ctx, cfg, st, server, string(bundle.CAPEM), log)
	if err != nil {
		return err
	}
	clusterDNS, err := newClusterDNS(ctx, cfg, st, server, string(bundle.CAPEM), log)
	if err != nil {
		return err
	}
	defer clusterDNS.close()

	// One etcd watch per kind serves every API watcher.
	st.ShareWatches(ctx, log.With("component", "store"))

	audit, err := openAudit(cfg)
	if err != nil {
		return err
	}
	agentCert, err := bundle.IssueClient(pki.APIServerClientName)
	if err != nil {
		return fmt.Errorf("tls: client certificate for node agents: %w", err)
	}
	api := apiserver.New(apiserver.Config{
		Store:           st,
		TLS:             bundle.TLSConfig(),
		Log:             log.With("component", "apiserver"),
		Audit:           audit,
		Version:         cfg.Version,
		AgentClientCert: &agentCert,
		Network:         cfg.Network,
	})
	log.Info("API server listening", "address", ln.Addr().String(), "url", server, "adminConfig", adminConf)
	if cfg.Ready != nil {
		cfg.Ready(adminConf)
	}
	return serveWithControllers(ctx, cfg, ctrlClient, log, clusterDNS.alongside(func(ctx context.Context) error { return api.Run(ctx, ln) }))
}

// advertise returns the HOST:PORT clients on this machine should use.
func advertise(addr net.Addr, listen string) string {
	_, port, _ := net.SplitHostPort(addr.String())
	host, _, _ := net.SplitHostPort(listen)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func openAudit(cfg Config) (io.Writer, error) {
	switch cfg.AuditLog {
	case "off":
		return nil, nil
	case "-":
		return nopCloser{os.Stdout}, nil
	}
	path := cfg.AuditLog
	if path == "" {
		path = filepath.Join(cfg.DataDir, "audit.log")
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--audit-log: %w", err)
	}
	return f, nil
}

type nopCloser struct{ io.Writer }
