package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/controller"
	"github.com/paddock-dev/paddock/core/scheduler"
	"github.com/paddock-dev/paddock/core/store"
)

// ControllerConfig configures the controllers the server runs (leader
// elected: with several servers on one etcd, one of them acts).
type ControllerConfig struct {
	// Enabled runs the controllers in this process. `paddock server` turns
	// it on by default (--controllers); a zero Config leaves it off.
	Enabled bool
	// Identity names this server in the controllers' lease; default:
	// the host name and a random suffix.
	Identity string
	// NodeMonitorGracePeriod and PodEvictionTimeout: see controller.Config
	// (zero: 40s and 5m).
	NodeMonitorGracePeriod time.Duration
	PodEvictionTimeout     time.Duration
	// Scheduler tunes the scheduling loop (score weights, sampling); see
	// LoadSchedulerConfig.
	Scheduler scheduler.Config
}

// LoadSchedulerConfig reads a scheduler config (JSON, see
// scheduler.DecodeConfig) from a file; errors name the file and the
// field.
func LoadSchedulerConfig(path string) (scheduler.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return scheduler.Config{}, fmt.Errorf("scheduler config: %w", err)
	}
	cfg, err := scheduler.DecodeConfig(b)
	if err != nil {
		return scheduler.Config{}, fmt.Errorf("scheduler config %s: %w", path, err)
	}
	return cfg, nil
}

// ControllersConfigPath is where the controllers' client config (a
// cluster-admin credential the server mints for itself) is kept.
func ControllersConfigPath(dataDir string) string {
	return filepath.Join(dataDir, "controllers.conf")
}

// controllerClient returns the client the controllers reach this
// server's API through, minting their credential when needed; nil when
// the controllers are off.
func controllerClient(ctx context.Context, cfg Config, st *store.Store, server, caPEM string, log *slog.Logger) (*client.Client, error) {
	if !cfg.Controllers.Enabled {
		return nil, nil
	}
	return adminClient(ctx, st, ControllersConfigPath(cfg.DataDir), server, caPEM, "controllers (controllers.conf)", log)
}

// serveWithControllers runs serve and, when c is set, the controllers
// until ctx ends. The controllers stop first, so that a leader releases
// its lease through a live API server and another server takes over at
// once; then serve's context ends.
func serveWithControllers(ctx context.Context, cfg Config, c *client.Client, log *slog.Logger, serve func(context.Context) error) error {
	if c == nil {
		return serve(ctx)
	}
	cc := cfg.Controllers
	if cc.Identity == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		rand.Read(b)
		cc.Identity = host + "-" + hex.EncodeToString(b)
	}
	ctrlCtx, stopCtrl := context.WithCancel(ctx)
	defer stopCtrl()
	ctrlDone := make(chan error, 1)
	go func() {
		ctrlDone <- controller.Run(ctrlCtx, controller.Config{
			Client:                 c,
			Identity:               cc.Identity,
			Log:                    log.With("component", "controllers"),
			NodeMonitorGracePeriod: cc.NodeMonitorGracePeriod,
			PodEvictionTimeout:     cc.PodEvictionTimeout,
			Scheduler:              controller.SchedulerConfig{Config: cc.Scheduler},
			Network:                cfg.Network,
		})
	}()
	serveCtx, stopServe := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServe()
	serveDone := make(chan error, 1)
	go func() { serveDone <- serve(serveCtx) }()
	log.Info("controllers started; competing for leadership", "identity", cc.Identity)

	select {
	case err := <-serveDone:
		stopCtrl()
		<-ctrlDone
		return err
	case err := <-ctrlDone: // ctx ended (or the controllers' config is wrong)
		stopServe()
		serr := <-serveDone
		if err != nil {
			return fmt.Errorf("controllers: %w", err)
		}
		return serr
	}
}
