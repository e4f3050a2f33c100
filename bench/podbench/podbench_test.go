package podbench

import (
	"bytes"
	"github.com/paddock-dev/paddock/bench/internal/mdreport/mdreporttest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/internal/testbin"
)

// TestRunSmoke runs PODSTART with 3 pods on a real control plane, agent,
// runc plugin and runc: every start is measured, bound no later than
// running, the report and its section in a benchmarks file are
// well-formed (the samples listed in the order they were taken), and the
// run's directory, mounts and processes are gone afterwards (agent.Down
// and the control plane's stop ran). collect takes the machine-wide test
// lock itself (it does not nest, so the test does not take it too).
func TestRunSmoke(t *testing.T) {
	archive := testbin.Containers(t)
	plugin := testbin.Binary(t, "paddock-runtime-runc")
	// Not t.TempDir(): the plugins' socket paths lie below it and must
	// stay short.
	dataDir, err := os.MkdirTemp("", "pdpt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dataDir) })
	doc := filepath.Join(t.TempDir(), "docs", "benchmarks.md")
	var out bytes.Buffer
	cfg := DefaultConfig()
	cfg.Plugin, cfg.ImageArchive = plugin, archive
	cfg.Pods, cfg.Concurrency, cfg.Warmup = 3, 2, 1
	cfg.DataDir, cfg.Write, cfg.Out = dataDir, doc, &out
	cfg.Command = "paddock-bench --benchmarks PODSTART --podstart-pods 3"

	res, err := collect(t.Context(), cfg)
	if err != nil {
		t.Fatalf("collect() = %v", err)
	}
	for name, p := range map[string]*podPhase{"sequential": res.seqPods, "concurrent": res.conPods} {
		if p == nil || len(p.Starts) != cfg.Pods || p.Rate() <= 0 {
			t.Errorf("%s pods: %+v, want %d starts and a positive rate", name, p, cfg.Pods)
			continue
		}
		for i, s := range p.Starts {
			if s.Name == "" || s.Create <= 0 || s.Running <= 0 || s.Bound > s.Running || s.At.IsZero() {
				t.Errorf("%s pods: start %d = %+v, want a name, a positive create and running, bound ≤ running", name, i, s)
			}
		}
	}
	for name, lat := range map[string][]time.Duration{"sequential": res.seqFloor, "concurrent": res.conFloor} {
		if len(lat) != cfg.Pods {
			t.Errorf("%s floor: %d starts, want %d", name, len(lat), cfg.Pods)
		}
		for i, d := range lat {
			if d <= 0 {
				t.Errorf("%s floor: start %d took %v, want > 0", name, i, d)
			}
		}
	}

	seqFloor := slices.Clone(res.seqFloor)
	if err := res.publish(); err != nil {
		t.Fatalf("publish() = %v", err)
	}
	report := out.String()
	if !slices.Equal(res.seqFloor, seqFloor) {
		t.Errorf("publish reordered the floor's samples: %v, were %v", res.seqFloor, seqFloor)
	}
	mdreporttest.Check(t, report, doc, "PODSTART",
		"## PODSTART: end-to-end pod start on the real runc runtime",
		"| Metric | Pods | Floor: `runc run` | Ratio |",
		"| create → Running seen, sequential, p50 (ms) |",
		"| starts/s at concurrency 2 (3 starts) |",
		"| Create returned → bound seen",
		"paddock-bench --benchmarks PODSTART --podstart-pods 3",
		"### Raw samples",
		"### Machine",
		"runc version",
	)
	if entries, err := os.ReadDir(dataDir); err != nil || len(entries) != 0 {
		t.Errorf("the data directory holds %v (%v), want nothing", entries, err)
	}
	if mounts, err := os.ReadFile("/proc/self/mountinfo"); err != nil || strings.Contains(string(mounts), dataDir) {
		t.Errorf("mounts below %s are left (%v)", dataDir, err)
	}
	// The plugins run in directories below the data directory, and the
	// shims are given paths below it.
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		cmd, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		cwd, _ := os.Readlink(filepath.Join(p, "cwd"))
		if bytes.Contains(cmd, []byte(dataDir)) || strings.HasPrefix(cwd, dataDir) {
			t.Errorf("a process is left: %s in %s: %s", p, cwd, bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))
		}
	}
}

func TestConfigCheck(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*Config)
		field string // the error names it; "" for no error
	}{
		{"defaults", func(*Config) {}, ""},
		{"no plugin", func(c *Config) { c.Plugin = "" }, "plugin"},
		{"no archive", func(c *Config) { c.ImageArchive = "" }, "image archive"},
		{"no image", func(c *Config) { c.Image = "" }, "image"},
		{"no runc", func(c *Config) { c.Runc = "" }, "runc"},
		{"zero pods", func(c *Config) { c.Pods = 0 }, "pods"},
		{"more pods than a node runs", func(c *Config) { c.Pods = 101 }, "pods"},
		{"zero concurrency", func(c *Config) { c.Concurrency = 0 }, "concurrency"},
		{"more workers than pods", func(c *Config) { c.Concurrency = 51 }, "concurrency"},
		{"negative warm-up", func(c *Config) { c.Warmup = -1 }, "warmup"},
		{"no start timeout", func(c *Config) { c.StartTimeout = 0 }, "start timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.edit(&cfg)
			err := cfg.check()
			switch {
			case tc.field == "" && err != nil:
				t.Errorf("check() = %v, want nil", err)
			case tc.field != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.field+":")):
				t.Errorf("check() = %v, want an error about %s", err, tc.field)
			}
		})
	}
}
