// Package cli is the paddock command line: the server and all-in-one
// commands, the kubectl-like client commands (apply, get, describe,
// delete, logs, exec), tenant and token management and etcd operations.
//
// NewRoot builds the command tree; cmd/paddock only runs it. Commands
// print one readable line on error and the process exits non-zero (see
// Main).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/spf13/cobra"
)

// Version is the version of Paddock, set at build time.
var Version = "v0.1.0-dev"

// globals are the flags every client command shares.
type globals struct {
	configPath string
	tenant     string
	out        io.Writer
	errOut     io.Writer
}

// client returns an API client from the configuration named by --config,
// $PADDOCK_CONFIG or ~/.paddock/config.
func (g *globals) client() (*client.Client, *client.Config, error) {
	cfg, err := client.LoadConfig(client.DefaultConfigPath(g.configPath))
	if err != nil {
		return nil, nil, err
	}
	c, err := client.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	return c, cfg, nil
}

// tenantFor returns the tenant a command acts in: -t, else the
// configuration's tenant.
func (g *globals) tenantFor(cfg *client.Config) string {
	if g.tenant != "" {
		return g.tenant
	}
	return cfg.Tenant
}

// NewRoot returns the paddock command tree writing to out and errOut.
func NewRoot(out, errOut io.Writer) *cobra.Command {
	g := &globals{out: out, errOut: errOut}
	root := &cobra.Command{
		Use:   "paddock",
		Short: "Paddock: a sandboxed multi-tenant container orchestrator",
		Long: `Paddock runs tenants' containers on a Kubernetes-shaped control plane, keeping
tenants apart at every layer.

Start a cluster with 'paddock up', then use the client commands against it:
  paddock tenant create acme --quota pods=10,cpu=4,memory=8Gi
  paddock apply -f pod.yaml -t acme
  paddock get pods -t acme`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(out)
	root.SetErr(errOut)
	root.PersistentFlags().StringVar(&g.configPath, "config", "", "client config file (default $PADDOCK_CONFIG, else ~/.paddock/config)")
	root.PersistentFlags().StringVarP(&g.tenant, "tenant", "t", "", "tenant to act in (default: the credential's tenant)")
	root.AddCommand(
		newServerCmd(g),
		newUpCmd(g),
		newDownCmd(g),
		newAgentCmd(g),
		newEtcdCmd(g),
		newVersionCmd(g),
		newRunCmd(g),
		newScaleCmd(g),
		newRolloutCmd(g),
		newLogsCmd(g),
		newExecCmd(g, os.Stdin),
	)
	addClientCommands(root, g)
	return root
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprintf(g.out, "paddock %s\n", Version)
			return err
		},
	}
}

// Main runs the command line with os.Args and returns the exit code.
// extra adds commands that live outside core (the conformance runner,
// which core may not import).
func Main(extra ...func(out, errOut io.Writer) *cobra.Command) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := NewRoot(os.Stdout, os.Stderr)
	for _, mk := range extra {
		root.AddCommand(mk(os.Stdout, os.Stderr))
	}
	if err := root.ExecuteContext(ctx); err != nil {
		code, silent := exitCode(err)
		if !silent {
			fmt.Fprintln(os.Stderr, FormatError(err))
		}
		return code
	}
	return 0
}

// FormatError renders an error as the one line the CLI prints, in
// kubectl's style for errors from the server.
func FormatError(err error) string {
	var e *errdefs.Error
	if errors.As(err, &e) {
		_, reason := errdefs.HTTPStatus(err)
		if errors.Is(err, errdefs.ErrUnavailable) {
			return "error: " + err.Error()
		}
		return fmt.Sprintf("Error (%s): %s", reason, err.Error())
	}
	return "error: " + err.Error()
}

// newLogger returns the logger of long-running commands: text on stderr,
// or JSON with --log-format json.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
