// Package suitetest holds what the conformance suites' own tests share to
// read the report of a run: which cases ended how, the focus that runs a
// list of cases, and the summary to print when a test fails.
package suitetest

import (
	"strings"

	"github.com/paddock-dev/paddock/conformance/report"
)

// WithStatus returns the ids of the cases of rep that ended with status,
// in the report's order.
func WithStatus(rep *report.Report, status report.Status) []string {
	var ids []string
	for _, r := range rep.Results {
		if r.Status == status {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

// FocusOn returns the focus expression that matches exactly the cases
// with the given ids.
func FocusOn(ids []string) string { return "^(" + strings.Join(ids, "|") + ")$" }

// Summary returns rep's readable summary.
func Summary(rep *report.Report) string {
	var s strings.Builder
	rep.WriteSummary(&s)
	return s.String()
}
