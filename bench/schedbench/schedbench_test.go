package schedbench

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/bench/internal/mdreport"
)

// TestRunSmall runs B1 at a tiny size against a real control plane and
// the real scheduling loop: every pod is bound, the report and its
// section in a benchmarks file are well-formed, and no goroutine is left.
func TestRunSmall(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	doc := filepath.Join(t.TempDir(), "docs", "benchmarks.md")
	var out bytes.Buffer
	cfg := DefaultConfig()
	cfg.Nodes, cfg.PrePlaced, cfg.Pods = 50, 20, 200
	cfg.Tenants, cfg.Creators, cfg.Conns, cfg.Binders = 2, 8, 2, 16
	cfg.Procs, cfg.Timeout = 0, 3*time.Minute
	cfg.DataDir, cfg.Write, cfg.Out, cfg.Command = t.TempDir(), doc, &out, "paddock-bench --benchmarks B1 --b1-nodes 50 --b1-pods 200"
	if testing.Verbose() {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if err := Run(context.Background(), cfg); err != nil {
		t.Fatalf("Run: %v", err)
	}
	report := out.String()
	for _, want := range []string{
		"## B1: scheduler throughput (50 nodes, 200 pods)",
		"paddock-bench --benchmarks B1 --b1-nodes 50 --b1-pods 200",
		"| placement throughput, per-second samples: avg (pods/s) |",
		"| new scheduler's start to its first binding (lists the cluster) |",
		"| per pod, create returned → binding committed, p50 / p99 (ms) |",
		"| CPU-seconds per 1,000 pods, whole process |",
		"… of which the scheduler",
		"Every pod ended bound (checked by listing them)",
		"| floor: one compare-and-swap | 200 |",
		"| create returned → binding committed | 200 |",
		"### Machine",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "NaN") || strings.Contains(report, "Inf") {
		t.Errorf("report has a NaN or Inf:\n%s", report)
	}
	written, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	w := string(written)
	if !strings.HasPrefix(w, "# Benchmarks") || !strings.Contains(w, mdreport.Begin(sectionName)) || !strings.Contains(w, mdreport.End(sectionName)) ||
		!strings.Contains(w, report) {
		t.Errorf("written file is not a benchmarks file holding the report in B1's markers:\n%s", w)
	}
	entries, err := os.ReadDir(cfg.DataDir)
	if err != nil || len(entries) != 0 {
		t.Errorf("data dir after the run: %v entries (%v), want it empty", len(entries), err)
	}
	// Goroutines of the HTTP transports' idle connections end on their own.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > goroutines+2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines+2 {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after the run, %d before:\n%s", n, goroutines, buf[:runtime.Stack(buf, true)])
	}
}

func TestSummarizeThroughput(t *testing.T) {
	// scheduler_perf's percentiles: the ceil(n·p/100)-th smallest.
	got := summarizeThroughput([]float64{500, 100, 400, 200, 300})
	want := throughput{N: 5, Avg: 300, P50: 300, P90: 500, P99: 500}
	if got != want {
		t.Errorf("summarizeThroughput = %+v, want %+v", got, want)
	}
	if got := summarizeThroughput(nil); got != (throughput{}) {
		t.Errorf("summarizeThroughput(nil) = %+v, want zero", got)
	}
}

// TestLabelShares profiles a labelled busy loop next to an idle
// process: nearly all CPU samples carry the label.
func TestLabelShares(t *testing.T) {
	var prof bytes.Buffer
	if err := pprof.StartCPUProfile(&prof); err != nil {
		t.Skipf("skipping: the test binary is already being profiled: %v", err)
	}
	pprof.Do(context.Background(), pprof.Labels(cpuLabel, labelScheduler), func(context.Context) {
		x := 0
		for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); {
			for i := range 1000 {
				x += i
			}
		}
		_ = x
	})
	pprof.StopCPUProfile()
	shares, err := labelShares(prof.Bytes(), cpuLabel)
	if err != nil {
		t.Fatal(err)
	}
	if shares[labelScheduler] < 0.5 {
		t.Errorf("labelled share = %v (all shares %v), want most of the samples", shares[labelScheduler], shares)
	}
	if _, err := labelShares([]byte("not a profile"), cpuLabel); err == nil {
		t.Error("labelShares of garbage succeeded")
	}
}

func TestConfigCheck(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Config)
		field  string
	}{
		{"nodes", func(c *Config) { c.Nodes = 0 }, "nodes"},
		{"pods", func(c *Config) { c.Pods = 0 }, "pods"},
		{"too many pods", func(c *Config) { c.Nodes, c.PrePlaced, c.Pods = 1, 0, 60 }, "pods"},
		{"tenants", func(c *Config) { c.Tenants = 0 }, "tenants"},
		{"conns", func(c *Config) { c.Conns = c.Creators + 1 }, "conns"},
		{"timeout", func(c *Config) { c.Timeout = 0 }, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.change(&cfg)
			err := cfg.check()
			if err == nil || !strings.HasPrefix(err.Error(), tc.field+":") {
				t.Errorf("check() = %v, want an error naming %s", err, tc.field)
			}
		})
	}
	cfg := DefaultConfig()
	if err := cfg.check(); err != nil {
		t.Errorf("DefaultConfig().check() = %v", err)
	}
}
