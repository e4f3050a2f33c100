// Package cli is the `paddock conformance` command: it launches a plugin
// through plugins/pluginhost, exactly as the node agent does, runs a
// conformance suite against it, prints a summary, writes junit.xml and
// results.json, and fails when a case fails.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/paddock-dev/paddock/conformance/runtimetest"
	"github.com/paddock-dev/paddock/plugins/pluginhost"
	"github.com/spf13/cobra"
)

// New returns the conformance command tree, writing to out and errOut.
func New(out, errOut io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "conformance",
		Short: "Prove a runtime or network plugin with the conformance suite",
	}
	cmd.AddCommand(newRuntimeCmd(out, errOut))
	return cmd
}

type runtimeFlags struct {
	plugin, pluginConfig, profile, reportDir, focus, stateDir, imageArchive, image string
	caseTimeout                                                                    time.Duration
	list, verbose                                                                  bool
}

func newRuntimeCmd(out, errOut io.Writer) *cobra.Command {
	var f runtimeFlags
	cmd := &cobra.Command{
		Use:   "runtime --plugin PATH",
		Short: "Run the runtime conformance cases (RT-*) against a runtime plugin",
		Long: `Run the runtime conformance cases against the plugin binary at --plugin,
launched through the same host code the node agent uses. Each case checks
that it leaked no processes, mounts or cgroups. Prints a summary, writes
junit.xml and results.json to --report-dir, and exits non-zero if any case
fails. Run it as root on a machine (or CI job) of its own.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.list {
				for _, c := range runtimetest.Cases() {
					fmt.Fprintf(out, "%-10s %-5s %-10s %s\n", c.ID, c.Level, c.Profile, c.Name)
				}
				return nil
			}
			return runRuntime(cmd.Context(), f, out, errOut)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.plugin, "plugin", "", "path of the runtime plugin binary (required)")
	fl.StringVar(&f.pluginConfig, "plugin-config", "", "JSON file with the plugin's configuration (default {})")
	fl.StringVar(&f.profile, "profile", "core", "profile claimed: core or sandboxed")
	fl.StringVar(&f.reportDir, "report-dir", "", "directory for junit.xml and results.json")
	fl.StringVar(&f.focus, "focus", "", "run only cases whose id or name matches this regular expression")
	fl.StringVar(&f.stateDir, "state-dir", "", "host state directory (default: a fresh temporary one)")
	fl.StringVar(&f.imageArchive, "image-archive", "build/images/busybox.tar", "OCI archive of the test image (make testimages builds it)")
	fl.StringVar(&f.image, "image", "paddock.dev/test/busybox:latest", "reference of the test image in the archive")
	fl.DurationVar(&f.caseTimeout, "case-timeout", 2*time.Minute, "longest time one case may take")
	fl.BoolVar(&f.list, "list", false, "list the cases and exit")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "show the plugin's and the host's logs")
	return cmd
}

func runRuntime(ctx context.Context, f runtimeFlags, out, errOut io.Writer) error {
	if f.plugin == "" {
		return errors.New("--plugin: required: the path of the runtime plugin binary")
	}
	var focus *regexp.Regexp
	if f.focus != "" {
		var err error
		if focus, err = regexp.Compile(f.focus); err != nil {
			return fmt.Errorf("--focus %q: %w", f.focus, err)
		}
	}
	config := []byte("{}")
	if f.pluginConfig != "" {
		var err error
		if config, err = os.ReadFile(f.pluginConfig); err != nil {
			return fmt.Errorf("--plugin-config: %w", err)
		}
	}
	stateDir := f.stateDir
	if stateDir == "" {
		dir, err := os.MkdirTemp("", "paddock-conformance-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		stateDir = dir
	}
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelDebug
	}
	host, err := pluginhost.New(pluginhost.Config{
		StateDir: stateDir,
		Logger:   slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		return err
	}
	defer host.Close()
	abs, err := filepath.Abs(f.plugin)
	if err != nil {
		return err
	}
	inst, err := host.Launch(ctx, pluginhost.RuntimeKind, "under-test", abs, config)
	if err != nil {
		return fmt.Errorf("launch %s: %w", f.plugin, err)
	}
	defer func() {
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = inst.Kill(kctx)
	}()
	rep, err := runtimetest.Run(ctx, runtimetest.Config{
		Target:       runtimetest.HostTarget(inst),
		Profile:      f.profile,
		Focus:        focus,
		ImageArchive: f.imageArchive,
		Image:        f.image,
		CaseTimeout:  f.caseTimeout,
		Progress:     errOut,
	})
	if err != nil {
		return err
	}
	rep.WriteSummary(out)
	if f.reportDir != "" {
		if err := rep.WriteFiles(f.reportDir); err != nil {
			return fmt.Errorf("--report-dir: %w", err)
		}
		fmt.Fprintf(out, "report: %s, %s\n", filepath.Join(f.reportDir, "junit.xml"), filepath.Join(f.reportDir, "results.json"))
	}
	if _, failed, _ := rep.Counts(); failed > 0 {
		return fmt.Errorf("%d conformance case(s) failed", failed)
	}
	return nil
}
