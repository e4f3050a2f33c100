package mdreport

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWriteTwoSections checks that benchmarks' sections live side by
// side: each write replaces only its own, in place.
func TestWriteTwoSections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "docs", "benchmarks.md")
	read := func() string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if err := Write(path, "B4", "b4 first"); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != Header+"\n"+Wrap("B4", "b4 first") {
		t.Fatalf("new file = %q", got)
	}
	if err := Write(path, "B3", "b3 first"); err != nil {
		t.Fatal(err)
	}
	// Hand-written text between and after the sections stays.
	text := strings.Replace(read(), Wrap("B4", "b4 first"), "notes\n\n"+Wrap("B4", "b4 first")+"\nmore notes\n", 1)
	if err := os.WriteFile(path, []byte(text), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, "B4", "b4 second"); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, "B3", "b3 second"); err != nil {
		t.Fatal(err)
	}
	want := Header + "\nnotes\n\n" + Wrap("B4", "b4 second") + "\nmore notes\n\n" + Wrap("B3", "b3 second")
	if got := read(); got != want {
		t.Errorf("after rewriting both sections:\n%s\nwant:\n%s", got, want)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("mode after a rewrite = %v (%v), want the file's 0640 kept", st.Mode().Perm(), err)
	}

	// Half a section is an error, not a guess; the file is left alone.
	half := Header + "\n" + Begin("B3") + "\n"
	if err := os.WriteFile(path, []byte(half), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, "B3", "b3 third"); err == nil || !strings.Contains(err.Error(), "B3") {
		t.Errorf("Write on a file with only B3's begin marker = %v, want an error naming the section", err)
	}
	if got := read(); got != half {
		t.Errorf("the file changed after a refused write: %q", got)
	}
}

func TestFormats(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{{0, "0"}, {999.5, "1,000"}, {1234567, "1,234,567"}, {-4321, "-4,321"}} {
		if got := Count(tc.in); got != tc.want {
			t.Errorf("Count(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct {
		in   time.Duration
		want string
	}{{1500 * time.Microsecond, "1.50"}, {-20400 * time.Microsecond, "-20.4"}, {123456 * time.Microsecond, "123"}} {
		if got := Ms(tc.in); got != tc.want {
			t.Errorf("Ms(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct {
		a, b float64
		want string
	}{{3, 2, "1.50"}, {1, 0, "n/a"}, {1, -1, "n/a"}, {math.Inf(1), 1, "n/a"}, {math.NaN(), 1, "n/a"}} {
		if got := Ratio(tc.a, tc.b); got != tc.want {
			t.Errorf("Ratio(%v, %v) = %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
	var h strings.Builder
	start := time.Date(2026, 11, 26, 5, 4, 0, 0, time.UTC)
	Heading(&h, "B9: a test", "bench/x", start, start.Add(61400*time.Millisecond), "bin/paddock-bench --benchmarks B9")
	if got, want := h.String(), "## B9: a test\n\nMeasured 2026-11-26 05:04 UTC by `paddock-bench` (bench/x); 1m1s.\n\n```\nbin/paddock-bench --benchmarks B9\n```\n\n"; got != want {
		t.Errorf("Heading = %q, want %q", got, want)
	}
	tab := NewTable("a", "b")
	tab.Row("1", "2")
	if got, want := tab.String(), "| a | b |\n| --- | --- |\n| 1 | 2 |\n"; got != want {
		t.Errorf("table = %q, want %q", got, want)
	}
}
