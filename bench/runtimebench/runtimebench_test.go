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

// prerequisites returns the plugin binaries (built for the test) and the
// image archive; without root, runc or the archive it skips outside CI and
// fails under CI=true. The gvisor and containerd classes' own
// prerequisites are the run's to check (planClasses).
func prerequisites(t *testing.T) (runtimes Runtime, pods PodRuntimes) {
	t.Helper()
	archive, _ := filepath.Abs("../../build/images/busybox.tar")
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
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "../../cmd/paddock-runtime-runc", "../../cmd/paddock-runtime-runsc",
		"../../cmd/paddock-runtime-containerd", "../../cmd/paddock-runc-shim")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the plugins: %v\n%s", err, out)
	}
	runtimes = DefaultRuntime()
	runtimes.Plugin, runtimes.ImageArchive = filepath.Join(bin, "paddock-runtime-runc"), archive
	pods = DefaultPodRuntimes()
	pods.RunscPlugin, pods.ContainerdPlugin = filepath.Join(bin, "paddock-runtime-runsc"), filepath.Join(bin, "paddock-runtime-containerd")
	// runsc takes minutes to build: make build's.
	pods.Runsc, _ = filepath.Abs("../../bin/runsc")
	return runtimes, pods
}

// TestRunSmoke runs B3 with tiny counts against the real plugin and real
// runc: every workload's samples are there and positive, the report and
// its section in a benchmarks file are well-formed, and nothing the run
// made is left: no directory, mount, cgroup, child process or goroutine.
// collect takes the machine-wide test lock itself (it does not nest, so
// the test does not take it too).
func TestRunSmoke(t *testing.T) {
	runtimes, podRuntimes := prerequisites(t)
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
	cfg.Runtime, cfg.PodRuntimes = runtimes, podRuntimes
	cfg.Starts, cfg.Concurrency, cfg.Warmup, cfg.PodStarts = 3, 2, 1, 2
	cfg.DataDir, cfg.Write, cfg.Out = dataDir, doc, &out
	cfg.Command = "paddock-bench --benchmarks B3 --smoke"

	res, err := collect(t.Context(), cfg)
	if err != nil {
		t.Fatalf("collect() = %v", err)
	}
	t.Logf("the run took %v once it had the machine lock", res.finished.Sub(res.started).Round(time.Second))
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
	podPhases := map[string]*phase{"pod floor runc run": res.podFloor, "pod floor runsc run": res.runscFloor}
	measured := map[string]bool{}
	for _, c := range res.classes {
		if c.skipped != "" {
			t.Logf("class %s not measured: %s", c.name, c.skipped)
			continue
		}
		measured[c.name] = true
		podPhases["pod "+c.name] = res.pods[c.name]
	}
	if len(res.classes) != len(AllClasses) || !measured[ClassRunc] {
		t.Errorf("classes %+v, want all of %v planned and runc measured", res.classes, AllClasses)
	}
	if !measured[ClassGvisor] {
		podPhases["pod floor runsc run"] = nil
		if res.runscFloor != nil {
			t.Errorf("runsc run floor measured without the gvisor class")
		}
	}
	for name, p := range podPhases {
		if p == nil {
			continue
		}
		if len(p.Samples) != cfg.PodStarts {
			t.Errorf("%s: %d samples, want %d", name, len(p.Samples), cfg.PodStarts)
		}
		for i, s := range p.Samples {
			ok := s.Marker > 0 && s.Ready >= s.Marker && s.Ready >= s.Start && !s.At.IsZero()
			if strings.HasPrefix(name, "pod floor") {
				ok = ok && s.Sandbox == 0 && s.Create == 0
			} else {
				ok = ok && s.Sandbox > 0 && s.Create > s.Sandbox && s.Start > s.Create
			}
			if !ok {
				t.Errorf("%s: sample %d = %+v, want 0 < sandbox < create < start (floors: one step) and a positive marker", name, i, s)
			}
		}
	}
	if res.podFloor == nil {
		t.Errorf("no runc run pod floor")
	}
	for class, name := range map[string]string{ClassRunc: "runc", ClassGvisor: "runsc", ClassContainerd: "containerd"} {
		if got := res.podPlugins[class].Name; measured[class] && got != name {
			t.Errorf("class %s ran on plugin %q, want %q", class, got, name)
		}
	}
	if res.markLatency.N != markSamples || res.markLatency.P50 <= 0 {
		t.Errorf("marker latency %+v, want %d positive samples", res.markLatency, markSamples)
	}

	if res.seqPlugin.PluginCPU <= 0 || res.seqPlugin.PluginCPU > res.seqPlugin.CPU {
		t.Errorf("plugin process CPU %v, with children %v; want 0 < own ≤ with children", res.seqPlugin.PluginCPU, res.seqPlugin.CPU)
	}

	if err := res.publish(); err != nil {
		t.Fatalf("publish() = %v", err)
	}
	report := out.String()
	mdreporttest.Check(t, report, doc, "B3",
		"## B3: pod and container start through the runtime plugins (runc, gVisor, containerd)",
		"### Pod start: the runc, gvisor and containerd classes side by side",
		"| Class | Plugin | Pod start p50 / p99 (ms) | Floor | Floor p50 / p99 (ms) | Ratio to floor p50 / p99 | Goal |",
		"gvisor p50 / runc p50",
		"The marker's own latency",
		"### Container start in an existing pod (runc class)",
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
	// The pods' cgroups (the runc and runsc plugins' below /paddock,
	// the containerd plugin's below /paddock-containerd).
	if len(res.podSandboxes) == 0 {
		t.Errorf("no pod sandboxes recorded")
	}
	for _, id := range res.podSandboxes {
		for _, parent := range []string{"paddock", "paddock-containerd"} {
			if left, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent, id)); len(left) > 0 {
				t.Errorf("pod cgroups left: %v", left)
			}
		}
	}
	// No process of the run is left: gVisor's sandboxes and gofers,
	// the containerd daemon and its shims all name the data directory.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), dataDir) {
			t.Errorf("process left: %s: %s", f, strings.ReplaceAll(string(b), "\x00", " "))
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
		{"zero pod starts", func(c *Config) { c.PodStarts = 0 }, "pod starts"},
		{"no classes", func(c *Config) { c.Classes = nil }, "classes"},
		{"unknown class", func(c *Config) { c.Classes = []string{"runc", "kata"} }, "classes"},
		{"class twice", func(c *Config) { c.Classes = []string{"gvisor", "gvisor"} }, "classes"},
		{"one class", func(c *Config) { c.Classes = []string{"containerd"} }, ""},
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

// TestMarks checks the marker directory on its own: a file created by
// another opener reaches the start waiting for its tag, with a time no
// earlier than the creation, other tags' waiters are not woken, and the
// marker's own latency is measured.
func TestMarks(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "marks")
	m, err := openMarks(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	mine, other := m.expect("c-1"), m.expect("c-2")
	before := time.Now()
	// As the container's shell does: open, write, close.
	if err := os.WriteFile(filepath.Join(dir, "c-1"), []byte("c-1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
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
		t.Errorf("c-2's waiter got %v without a file of its own", at)
	default:
	}
	m.forget("c-1")
	m.forget("c-2")
	if _, err := os.Stat(filepath.Join(dir, "c-1")); !os.IsNotExist(err) {
		t.Errorf("forget left the marker file of c-1 (%v)", err)
	}
	lat, err := m.latency(5)
	if err != nil || len(lat) != 5 {
		t.Fatalf("latency(5) = %v, %v; want 5 samples", lat, err)
	}
	for _, d := range lat {
		if d <= 0 || d > 10*time.Second {
			t.Errorf("marker latency sample %v, want between 0 and 10s", d)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("marker files left after latency: %v", entries)
	}
	if err := m.close(); err != nil {
		t.Errorf("close() = %v", err)
	}
}

// TestPlanClasses checks that a class whose prerequisites are missing is
// reported as not measured with what is missing, and fails the run when
// strict (CI=true); the runc class needs nothing of its own.
func TestPlanClasses(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Classes = []string{ClassContainerd, ClassRunc, ClassGvisor}
	cfg.RunscPlugin = filepath.Join(t.TempDir(), "no-such-plugin")
	cfg.ContainerdPlugin = filepath.Join(t.TempDir(), "no-such-plugin")
	plans, err := cfg.planClasses(false)
	if err != nil {
		t.Fatalf("planClasses(false) = %v", err)
	}
	var got []string
	for _, p := range plans {
		got = append(got, p.name)
		switch {
		case p.name == ClassRunc && p.skipped != "":
			t.Errorf("runc skipped: %s", p.skipped)
		case p.name != ClassRunc && !strings.Contains(p.skipped, "no-such-plugin: not an executable file"):
			t.Errorf("%s skipped = %q, want it to name the missing plugin", p.name, p.skipped)
		}
	}
	if want := strings.Join(AllClasses, ","); strings.Join(got, ",") != want {
		t.Errorf("planned %v, want %s (report order)", got, want)
	}
	if _, err := cfg.planClasses(true); err == nil || !strings.HasPrefix(err.Error(), "classes: gvisor: needs ") {
		t.Errorf("planClasses(true) = %v, want an error about the gvisor class", err)
	}
}
