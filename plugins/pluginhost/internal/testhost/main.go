// Command testhost launches one runtime plugin through pluginhost, prints
// "ready PID" and waits. pluginhost's tests SIGKILL it to show that a
// plugin outlives its host and that the next host reattaches to it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/paddock-dev/paddock/plugins/pluginhost"
)

type config struct {
	stateDir, plugin, name, pluginConfig string
}

func main() {
	var cfg config
	flag.StringVar(&cfg.stateDir, "state", "", "the host's state directory")
	flag.StringVar(&cfg.plugin, "plugin", "", "the plugin binary")
	flag.StringVar(&cfg.name, "name", "rt", "the plugin's name")
	flag.StringVar(&cfg.pluginConfig, "config", "{}", "the plugin's configuration (JSON)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "testhost:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config) error {
	h, err := pluginhost.New(pluginhost.Config{
		StateDir: cfg.stateDir,
		Logger:   slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		return err
	}
	defer h.Close()
	inst, err := h.Launch(ctx, pluginhost.RuntimeKind, cfg.name, cfg.plugin, []byte(cfg.pluginConfig))
	if err != nil {
		return err
	}
	fmt.Printf("ready %d\n", inst.PID())
	<-ctx.Done()
	return nil
}
