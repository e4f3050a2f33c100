package runtimebench

import (
	"bytes"
	"github.com/paddock-dev/paddock/bench/internal/mdreport/mdreporttest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// prerequisites returns the plugin binary (built for the test) and the
// image archive; without root, runc or the archive it skips outside CI and
// fails under CI=true.
func prerequisites(t *testing.T) (plugin, archive string) {
	t.Helper()
	archive, _ = filepath.Abs("../../build/images/busybox.tar")
	var missing string
	switch {
	case os.Geteuid() != 0:
		missing = "root"
	case func() bool { _, err := exec.LookPath("runc"); return err != nil }():
		missing = "runc (Debian package runc)"
	case func() bool { _, err := os.Stat(archive); return err != nil }():
		missing = archive + " (make testimages)"
	}
	if missing != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the B3 benchmark's test needs %s, and CI=true", missing)
		}
		t.Skipf("skipping: needs %s", missing)
	}
	plugin = filepath.Join(t.TempDir(), "paddock-runtime-runc")
	build := exec.Command("go", "build", "-o", plugin, "../../cmd/paddock-runtime-runc")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the plugin: %v\n%s", err, out)
	}
	return plugin, archive
}

// TestRunSmoke runs B3 with tiny counts against the real plugin and real
// runc: every workload's samples are there and positive, the report and
// its section in a benchmarks file are well-formed, and nothing the run
// made is left: no directory, mount, cgroup, child process or goroutine.
// collect takes the machine-wide test lock itself (it does not nest, so
// the test does not take it too).
func TestRunSmoke(t *testing.T) {
	plugin, archive := prerequisites(t)
	goroutines := runtime.NumGoroutine()
	// Not t.TempDir(): the plugin's socket path lies below the data
	// directory and must stay short.
	dataDir, err := os.MkdirTemp("", "b3t")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dataDir) })
	doc := filepath.Join(t.TempDir(), "docs", "benchmarks.md")
	var out bytes.Buffer
	cfg := DefaultConfig()
	cfg.Plugin, cfg.ImageArchive = plugin, archive
	cfg.Starts, cfg.Concurrency, cfg.Warmup = 3, 2, 1
	cfg.DataDir, cfg.Write, cfg.Out = dataDir, doc, &out
	cfg.Command = "paddock-bench --benchmarks B3 --smoke"

	res, err := collect(t.Context(), cfg)
	if err != nil {
		t.Fatalf("collect() = %v", err)
	}
	phases := map[string]*phase{
		"sequential plugin": res.seqPlugin, "sequential runc run": res.seqFloor, "sequential runc create + start": res.seqTwoStep,
		"concurrent plugin": res.conPlugin, "concurrent runc run": res.conFloor,
	}
	for name, p := range phases {
		if p == nil || len(p.Samples) != cfg.Starts {
			t.Errorf("%s: %v, want %d samples", name, p, cfg.Starts)
			continue
		}
		if p.Rate() <= 0 || p.CPU <= 0 {
			t.Errorf("%s: rate %v/s, CPU %v; want both positive", name, p.Rate(), p.CPU)
		}
		for i, s := range p.Samples {
			if s.Marker <= 0 || s.Ready < s.Marker || s.Ready < s.Start || s.At.IsZero() {
				t.Errorf("%s: sample %d = %+v, want a positive marker and ready no earlier than marker and start", name, i, s)
			}
		}
	}
	for name, p := range map[string]*phase{"plugin": res.seqPlugin, "runc create + start": res.seqTwoStep} {
		for i, s := range p.Samples {
			if s.Create <= 0 || s.Start <= s.Create {
				t.Errorf("%s: sample %d = %+v, want 0 < create < start", name, i, s)
			}
		}
	}
	if res.seqPlugin.PluginCPU <= 0 || res.seqPlugin.PluginCPU > res.seqPlugin.CPU {
		t.Errorf("plugin process CPU %v, with children %v; want 0 < own ≤ with children", res.seqPlugin.PluginCPU, res.seqPlugin.CPU)
	}

	if err := res.publish(); err != nil {
		t.Fatalf("publish() = %v", err)
	}
	report := out.String()
	mdreporttest.Check(t, report, doc, "B3",
		"## B3: container start through the runtime plugin (runc)",
		"| Metric | Plugin | Floor: `runc run` | Ratio | Goal |",
		"| start → process runs, sequential, p50 (ms) |",
		"≤ 1.5 × floor: **",
		"| starts/s at concurrency 2 (3 starts) |",
		"| CPU per start, start to removal, sequential (ms) |",
		"paddock-bench --benchmarks B3 --smoke",
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
	dirs, err := ownCgroupDirs()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if left, _ := filepath.Glob(filepath.Join(d, "paddock-bench-*")); len(left) > 0 {
			t.Errorf("cgroups left: %v", left)
		}
	}
	if was, err := setSubreaper(false); err != nil || was {
		t.Errorf("child subreaper flag after the run = %v (%v), want it cleared again", was, err)
	}
	// The plugin and every runc are reaped, and the goroutines gone
	// (allowing for those that take a moment to notice a closed
	// connection).
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		n, _ := childCount(os.Getpid())
		if n == 0 && runtime.NumGoroutine() <= goroutines {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n, err := childCount(os.Getpid()); n != 0 || err != nil {
		t.Errorf("%d child processes left (%v)", n, err)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before the run, %d after:\n%s", goroutines, n, buf[:runtime.Stack(buf, true)])
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
		{"zero starts", func(c *Config) { c.Starts = 0 }, "starts"},
		{"zero concurrency", func(c *Config) { c.Concurrency = 0 }, "concurrency"},
		{"more sandboxes than workers", func(c *Config) { c.Sandboxes = 11 }, "sandboxes"},
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

// TestMarks checks the marker FIFO on its own: a line written by another
// opener reaches the start waiting for its tag, with a time no earlier
// than the write, and other tags' waiters are not woken.
func TestMarks(t *testing.T) {
	path := filepath.Join(t.TempDir(), markFile)
	m, err := openMarks(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	mine, other := m.expect("c-1"), m.expect("c-2")
	before := time.Now()
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteString("c-1\n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	select {
	case at := <-mine:
		if at.Before(before) {
			t.Errorf("marker time %v is before the write began at %v", at, before)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the marker of c-1 did not arrive within 10s")
	}
	select {
	case at := <-other:
		t.Errorf("c-2's waiter got %v without a line of its own", at)
	default:
	}
	m.forget("c-2")
	if err := m.close(); err != nil {
		t.Errorf("close() = %v", err)
	}
}
