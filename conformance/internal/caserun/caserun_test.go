package caserun_test

import (
	"bytes"
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/conformance/internal/caserun"
	"github.com/paddock-dev/paddock/conformance/report"
)

// run runs body as an advertised case with a minute's timeout.
func run(t *testing.T, body func(c *caserun.T)) report.Result {
	t.Helper()
	return caserun.Run(t.Context(), caserun.Case{
		Result:     report.Result{ID: "X-001", Name: "a case"},
		Advertised: true,
		Timeout:    time.Minute,
		Body:       body,
	})
}

// outcome is a case body and what Run should make of it.
type outcome struct {
	name       string
	body       func(c *caserun.T)
	wantStatus report.Status
	wantReason string
	wantLog    []string
}

func TestOutcomes(t *testing.T) {
	for _, tc := range []outcome{
		{name: "pass", body: func(c *caserun.T) { c.Logf("saw %d", 1) }, wantStatus: report.Pass, wantLog: []string{"saw 1"}},
		{name: "errors go on", body: func(c *caserun.T) {
			c.Errorf("first %s", "a")
			c.Errorf("second")
			c.Logf("after")
		}, wantStatus: report.Fail, wantReason: "first a\nsecond", wantLog: []string{"after"}},
		{name: "fatal ends the case", body: func(c *caserun.T) {
			c.Fatalf("stop")
			c.Logf("not reached")
		}, wantStatus: report.Fail, wantReason: "stop"},
		{name: "skip ends the case", body: func(c *caserun.T) {
			c.Skipf("no %s", "tty")
			c.Errorf("not reached")
		}, wantStatus: report.Skip, wantReason: "no tty"},
		{name: "panic fails", body: func(c *caserun.T) { panic("boom") }, wantStatus: report.Fail, wantReason: "case panicked: boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := run(t, tc.body)
			if res.ID != "X-001" || res.Name != "a case" {
				t.Errorf("Run kept id %q name %q, want X-001, a case", res.ID, res.Name)
			}
			if res.Status != tc.wantStatus || res.Reason != tc.wantReason {
				t.Errorf("Run = %s %q, want %s %q", res.Status, res.Reason, tc.wantStatus, tc.wantReason)
			}
			if !slices.Equal(res.Log, tc.wantLog) {
				t.Errorf("Run log = %q, want %q", res.Log, tc.wantLog)
			}
			if res.Duration <= 0 {
				t.Errorf("Run duration = %v, want it measured", res.Duration)
			}
		})
	}
}

func TestNotAdvertisedDoesNotRun(t *testing.T) {
	ran := false
	res := caserun.Run(t.Context(), caserun.Case{
		Result:  report.Result{ID: "X-002", Capability: "exec_tty"},
		Timeout: time.Minute,
		Watch:   func() func() []string { ran = true; return nil },
		Body:    func(*caserun.T) { ran = true },
	})
	if ran {
		t.Error("a case whose capability is not advertised ran")
	}
	if want := "the plugin does not advertise capability exec_tty"; res.Status != report.Skip || res.Reason != want {
		t.Errorf("Run = %s %q, want skip %q", res.Status, res.Reason, want)
	}
}

// A case the run leaves out (--skip) is reported as skipped, saying so,
// without running; one the expression does not match runs.
func TestLeftOut(t *testing.T) {
	skip := regexp.MustCompile("^X-00[34]$|Terminal")
	for _, tc := range []struct {
		id, name string
		want     report.Status
	}{{"X-003", "Exec", report.Skip}, {"X-005", "Exec with a Terminal", report.Skip}, {"X-006", "Exec", report.Pass}} {
		ran := false
		res := caserun.Run(t.Context(), caserun.Case{
			Result:     report.Result{ID: tc.id, Name: tc.name},
			Advertised: true,
			LeftOut:    caserun.LeftOut(skip, tc.id, tc.name),
			Timeout:    time.Minute,
			Body:       func(*caserun.T) { ran = true },
		})
		if res.Status != tc.want || ran != (tc.want == report.Pass) {
			t.Errorf("%s %q under --skip %s: %s (ran %v), want %s", tc.id, tc.name, skip, res.Status, ran, tc.want)
		}
		if tc.want == report.Skip && !strings.Contains(res.Reason, "--skip") {
			t.Errorf("%s left out with reason %q, want one naming --skip", tc.id, res.Reason)
		}
	}
	if got := caserun.LeftOut(nil, "X-003", "Exec"); got != "" {
		t.Errorf("LeftOut without --skip = %q, want none", got)
	}
}

func TestCleanups(t *testing.T) {
	var order []string
	res := run(t, func(c *caserun.T) {
		c.Cleanup(func() { order = append(order, "first") })
		c.Cleanup(func() {
			order = append(order, "second")
			c.Cleanup(func() { order = append(order, "registered by a cleanup") })
		})
		c.Cleanup(func() { panic("cleanup boom") })
		c.Fatalf("end")
	})
	if want := []string{"second", "registered by a cleanup", "first"}; !slices.Equal(order, want) {
		t.Errorf("cleanups ran in order %q, want %q", order, want)
	}
	if want := "end\ncleanup panicked: cleanup boom"; res.Status != report.Fail || res.Reason != want {
		t.Errorf("Run = %s %q, want fail %q", res.Status, res.Reason, want)
	}
}

func TestTimeout(t *testing.T) {
	var cleanupCtxErr error
	res := caserun.Run(t.Context(), caserun.Case{
		Result:     report.Result{ID: "X-003"},
		Advertised: true,
		Timeout:    50 * time.Millisecond,
		Body: func(c *caserun.T) {
			c.Cleanup(func() { cleanupCtxErr = c.Context().Err() })
			<-c.Context().Done()
		},
	})
	if res.Status != report.Fail || !strings.Contains(res.Reason, "case did not finish within 50ms") {
		t.Errorf("Run = %s %q, want a failure for the timeout", res.Status, res.Reason)
	}
	if cleanupCtxErr == nil {
		t.Error("the case's context was not done when its cleanups ran after the timeout")
	}
}

func TestEventually(t *testing.T) {
	n := 0
	res := run(t, func(c *caserun.T) { c.Eventually(time.Minute, "third poll", func() bool { n++; return n == 3 }) })
	if res.Status != report.Pass || n != 3 {
		t.Errorf("Eventually on a condition that holds at the third poll: %s %q after %d polls", res.Status, res.Reason, n)
	}
	res = run(t, func(c *caserun.T) { c.Eventually(100*time.Millisecond, "never", func() bool { return false }) })
	if want := "never: not within 100ms"; res.Status != report.Fail || res.Reason != want {
		t.Errorf("Eventually on a condition that never holds = %s %q, want fail %q", res.Status, res.Reason, want)
	}
}

func TestLeaks(t *testing.T) {
	for _, tc := range []outcome{
		{name: "fail a passing case", body: func(*caserun.T) {}, wantStatus: report.Fail, wantReason: "fail (leak): the case left residue behind"},
		{name: "keep a failure's reason", body: func(c *caserun.T) { c.Errorf("wrong") }, wantStatus: report.Fail, wantReason: "wrong"},
		{name: "leave a skip", body: func(c *caserun.T) { c.Skipf("no tty") }, wantStatus: report.Skip, wantReason: "no tty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var events []string
			res := caserun.Run(t.Context(), caserun.Case{
				Result:     report.Result{ID: "X-004"},
				Advertised: true,
				Timeout:    time.Minute,
				Watch: func() func() []string {
					events = append(events, "snapshot")
					return func() []string {
						events = append(events, "leaks")
						return []string{"process 42"}
					}
				},
				Body: func(c *caserun.T) {
					events = append(events, "body")
					c.Cleanup(func() { events = append(events, "cleanup") })
					tc.body(c)
				},
			})
			if want := []string{"snapshot", "body", "cleanup", "leaks"}; !slices.Equal(events, want) {
				t.Errorf("events %q, want %q", events, want)
			}
			if res.Status != tc.wantStatus || res.Reason != tc.wantReason || !slices.Equal(res.Leaks, []string{"process 42"}) {
				t.Errorf("Run = %s %q leaks %q, want %s %q leaks [process 42]", res.Status, res.Reason, res.Leaks, tc.wantStatus, tc.wantReason)
			}
		})
	}
}

func TestProgress(t *testing.T) {
	var b bytes.Buffer
	caserun.Progress(&b, report.Result{ID: "X-005", Name: "a case", Status: report.Fail})
	caserun.Progress(nil, report.Result{ID: "X-006"})
	if got, want := b.String(), "FAIL X-005 a case\n"; got != want {
		t.Errorf("Progress wrote %q, want %q", got, want)
	}
}

// The context a case gets ends with the one Run was given.
func TestContextFollowsTheRun(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	res := caserun.Run(ctx, caserun.Case{
		Result:     report.Result{ID: "X-007"},
		Advertised: true,
		Timeout:    time.Minute,
		Body: func(c *caserun.T) {
			if c.Context().Err() == nil {
				c.Errorf("the case's context is live after the run's ended")
			}
		},
	})
	if res.Status == report.Pass {
		t.Errorf("a case run with an ended context passed")
	}
}
