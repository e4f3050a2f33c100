package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/paddock-dev/paddock/conformance/report"
	"github.com/paddock-dev/paddock/plugins/pluginhost"
	"github.com/spf13/pflag"
)

// What every suite's command shares: reading its flags, launching the
// plugin under test, and writing the report.

// commonFlags are the flags of every suite's command.
type commonFlags struct {
	plugin, pluginConfig, focus, skip, reportDir, stateDir string
	caseTimeout                                            time.Duration
	list, verbose                                          bool
}

// register adds the flags to fl; kind names the plugins ("runtime").
func (f *commonFlags) register(fl *pflag.FlagSet, kind string) {
	fl.StringVar(&f.plugin, "plugin", "", "path of the "+kind+" plugin binary (required)")
	fl.StringVar(&f.pluginConfig, "plugin-config", "", "JSON file with the plugin's configuration (default {})")
	fl.StringVar(&f.focus, "focus", "", "run only cases whose id or name matches this regular expression")
	fl.StringVar(&f.skip, "skip", "", "leave out cases whose id or name matches this regular expression (reported as skipped: a run that leaves out a MUST case is not certifiable)")
	fl.StringVar(&f.reportDir, "report-dir", "", "directory for junit.xml and results.json")
	fl.StringVar(&f.stateDir, "state-dir", "", "host state directory (default: a fresh temporary one)")
	fl.DurationVar(&f.caseTimeout, "case-timeout", 2*time.Minute, "longest time one case may take")
	fl.BoolVar(&f.list, "list", false, "list the cases and exit")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "show the plugin's and the host's logs")
}

// selection is which cases a run takes: --focus and --skip.
type selection struct{ focus, skip *regexp.Regexp }

// check checks the flags both suites share and returns the cases they
// select and the plugin's configuration.
func (f *commonFlags) check(kind string) (selection, []byte, error) {
	var sel selection
	if f.plugin == "" {
		return sel, nil, fmt.Errorf("--plugin: required: the path of the %s plugin binary", kind)
	}
	var err error
	if sel.focus, err = compileFocus("--focus", f.focus); err != nil {
		return sel, nil, err
	}
	if sel.skip, err = compileFocus("--skip", f.skip); err != nil {
		return sel, nil, err
	}
	config, err := readConfig("--plugin-config", f.pluginConfig)
	if err != nil {
		return sel, nil, err
	}
	return sel, config, nil
}

// launchSpec returns the launch of the plugin the flags name.
func (f *commonFlags) launchSpec(config []byte) launchSpec {
	return launchSpec{plugin: f.plugin, stateDir: f.stateDir, verbose: f.verbose, config: config}
}

// launchSpec says how to launch the plugin under test.
type launchSpec struct {
	plugin   string // the binary
	stateDir string // the host's state directory; "" for a temporary one
	verbose  bool   // show the host's and the plugin's debug logs
	config   []byte // the plugin's configuration
	// hostConfig, when set, adjusts the host's configuration.
	hostConfig func(pluginhost.Config) pluginhost.Config
}

// launch starts the plugin under a host of its own, as "under-test", and
// returns it with the function that kills it and cleans up.
func launch(ctx context.Context, kind pluginhost.Kind, s launchSpec, errOut io.Writer) (*pluginhost.Instance, func(), error) {
	var undo []func()
	stop := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	stateDir := s.stateDir
	if stateDir == "" {
		dir, err := os.MkdirTemp("", "paddock-conformance-")
		if err != nil {
			return nil, nil, err
		}
		undo = append(undo, func() { os.RemoveAll(dir) })
		stateDir = dir
	}
	level := slog.LevelWarn
	if s.verbose {
		level = slog.LevelDebug
	}
	cfg := pluginhost.Config{
		StateDir: stateDir,
		Logger:   slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: level})),
	}
	if s.hostConfig != nil {
		cfg = s.hostConfig(cfg)
	}
	host, err := pluginhost.New(cfg)
	if err != nil {
		stop()
		return nil, nil, err
	}
	undo = append(undo, func() { host.Close() })
	abs, err := filepath.Abs(s.plugin)
	if err != nil {
		stop()
		return nil, nil, err
	}
	inst, err := host.Launch(ctx, kind, "under-test", abs, s.config)
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("launch %s: %w", s.plugin, err)
	}
	undo = append(undo, func() {
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = inst.Kill(kctx)
	})
	return inst, stop, nil
}

// compileFocus compiles the regular expression of flag; nil for "".
func compileFocus(flag, expr string) (*regexp.Regexp, error) {
	if expr == "" {
		return nil, nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", flag, expr, err)
	}
	return re, nil
}

// readConfig reads the plugin configuration file of flag; {} for "".
func readConfig(flag, path string) ([]byte, error) {
	if path == "" {
		return []byte("{}"), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return b, nil
}

// finish prints the summary, writes the report files into reportDir
// (when set) and fails when a case failed.
func finish(rep *report.Report, reportDir string, out io.Writer) error {
	rep.WriteSummary(out)
	if reportDir != "" {
		if err := rep.WriteFiles(reportDir); err != nil {
			return fmt.Errorf("--report-dir: %w", err)
		}
		fmt.Fprintf(out, "report: %s, %s\n", filepath.Join(reportDir, "junit.xml"), filepath.Join(reportDir, "results.json"))
	}
	if _, failed, _ := rep.Counts(); failed > 0 {
		return fmt.Errorf("%d conformance case(s) failed", failed)
	}
	return nil
}

// listCase prints one line of --list.
func listCase(out io.Writer, id, level, profile, name string) {
	fmt.Fprintf(out, "%-10s %-5s %-10s %s\n", id, level, profile, name)
}
