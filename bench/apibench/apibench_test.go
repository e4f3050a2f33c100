package apibench

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestRunSmoke runs every phase with tiny counts: the API server, both
// etcd members, all workloads, the watch fan-out, the report and --write.
func TestRunSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server and two etcd members; skipped with -short")
	}
	goroutines := runtime.NumGoroutine()
	dataDir := t.TempDir()
	doc := filepath.Join(t.TempDir(), "docs", "benchmarks.md")
	var out bytes.Buffer
	cfg := DefaultConfig()
	cfg.DataDir = dataDir
	cfg.Duration = 150 * time.Millisecond
	cfg.Warmup = 20 * time.Millisecond
	cfg.Reps = 2
	cfg.Clients = []int{1, 3}
	cfg.Conns = 2
	cfg.Watchers = 4
	cfg.WatchRate = 40
	cfg.GetObjects = 10
	cfg.FsyncSamples = 10
	cfg.Procs = 0
	cfg.Command = "paddock-bench --smoke"
	cfg.Write = doc
	cfg.Out = &out
	if err := Run(t.Context(), cfg); err != nil {
		t.Fatalf("Run() = %v", err)
	}

	report := out.String()
	for _, want := range []string{
		"| Metric | Value | Floor | Ratio | Goal |",
		"raw etcd put, 8 B key / 256 B value, 1 client (puts/s)",
		"API create (cluster-admin) of 1024 B ConfigMaps, 3 clients (creates/s)",
		"API create (tenant edit) of 1024 B ConfigMaps, 1 client (creates/s)",
		"API get, tenant edit, 3 clients (gets/s)",
		"watch write→delivery p50 / p99, 4 watchers",
		"memory per watcher, whole process",
		"fdatasync probe (10 × write 2300 B + fdatasync",
		"paddock-bench --smoke",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "NaN") {
		t.Errorf("report has NaN:\n%s", report)
	}

	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); !strings.HasPrefix(got, "# Benchmarks") || !strings.Contains(got, sectionBegin) || !strings.Contains(got, report) {
		t.Errorf("%s does not hold the header and the report in markers:\n%s", doc, got)
	}

	entries, err := os.ReadDir(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("Run left %d entries in the data directory, e.g. %s", len(entries), entries[0].Name())
	}

	// Everything Run started has ended (allowing for goroutines that
	// take a moment to notice their connection closed).
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before Run, %d after:\n%s", goroutines, n, buf[:runtime.Stack(buf, true)])
	}
}

func TestWriteSection(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "benchmarks.md")
	other := "\n## B1: scheduler\n\nsomeone else's numbers\n"
	section := func(s string) string { return sectionBegin + "\n\n" + s + "\n" + sectionEnd + "\n" }

	if err := writeSection(path, section("first")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if got := string(b); !strings.HasPrefix(got, benchmarksHeader) || !strings.HasSuffix(got, section("first")) {
		t.Fatalf("new file = %q", got)
	}

	// Another section follows ours; replacing ours keeps it.
	if err := os.WriteFile(path, append(b, other...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeSection(path, section("second")); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	got := string(b)
	if strings.Contains(got, "first") || strings.Count(got, sectionBegin) != 1 || !strings.Contains(got, section("second")) || !strings.HasSuffix(got, other) {
		t.Fatalf("replaced file = %q", got)
	}

	// A file without our section gets it appended.
	if err := os.WriteFile(path, []byte("# Benchmarks\n"+other), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeSection(path, section("third")); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	if got := string(b); got != "# Benchmarks\n"+strings.TrimRight(other, "\n")+"\n\n"+section("third") {
		t.Fatalf("appended file = %q", got)
	}

	// Half a section is an error, not a guess.
	if err := os.WriteFile(path, []byte(sectionBegin+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeSection(path, section("fourth")); err == nil {
		t.Fatalf("writeSection on a file with only the begin marker = nil, want an error")
	}
}

func TestPercentiles(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		d := make([]time.Duration, len(v))
		for i, x := range v {
			d[i] = time.Duration(x) * time.Millisecond
		}
		return d
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i
	}
	for _, tc := range []struct {
		name          string
		in            []time.Duration
		p50, p90, p99 time.Duration
	}{
		{"empty", nil, 0, 0, 0},
		{"one", ms(7), 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond},
		{"hundred unsorted", ms(hundred...), 50 * time.Millisecond, 90 * time.Millisecond, 99 * time.Millisecond},
		{"ten", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 5 * time.Millisecond, 9 * time.Millisecond, 10 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := summarize(tc.in)
			if got.P50 != tc.p50 || got.P90 != tc.p90 || got.P99 != tc.p99 {
				t.Errorf("summarize(%v) = p50 %v p90 %v p99 %v, want %v %v %v", tc.in, got.P50, got.P90, got.P99, tc.p50, tc.p90, tc.p99)
			}
		})
	}
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestObjectShape(t *testing.T) {
	for _, size := range []int{300, 1024, 4096} {
		s := newObjectShape(size)
		if len(s.value) != size {
			t.Errorf("newObjectShape(%d): stored value is %d bytes", size, len(s.value))
		}
	}
}
