// Package mdreporttest checks, in benchmarks' tests, the Markdown report
// a benchmark printed and wrote into its section of a file.
package mdreporttest

import (
	"os"
	"strings"
	"testing"
)

// Check fails tb unless report holds every want and no NaN, Inf or n/a,
// and the file doc starts with "# Benchmarks" and holds report between
// section's markers.
func Check(tb testing.TB, report, doc, section string, wants ...string) {
	tb.Helper()
	for _, want := range wants {
		if !strings.Contains(report, want) {
			tb.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	for _, bad := range []string{"NaN", "Inf", "n/a"} {
		if strings.Contains(report, bad) {
			tb.Errorf("report has %q:\n%s", bad, report)
		}
	}
	b, err := os.ReadFile(doc)
	if err != nil {
		tb.Fatal(err)
	}
	if got := string(b); !strings.HasPrefix(got, "# Benchmarks") || !strings.Contains(got, "<!-- paddock-bench "+section+": begin") || !strings.Contains(got, report) {
		tb.Errorf("%s does not hold the header and the report in %s's markers:\n%s", doc, section, got)
	}
}
