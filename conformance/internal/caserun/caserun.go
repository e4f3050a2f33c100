// Package caserun is what the conformance suites share to run one case:
// the common half of a case's handle, T (failures, skip, log lines,
// cleanups, the case's context), and Run, which gives a case its own
// goroutine and deadline, recovers its panics, runs its cleanups, checks
// for leaks and turns what the case recorded into a report.Result.
//
// Each suite embeds *T in its own handle type, which adds the helpers for
// its kind of plugin, so that Errorf, Fatalf, Skipf, Logf, Cleanup,
// Context and Eventually mean the same in every suite.
//
// A T is safe for use by the case's goroutine and by helper goroutines it
// starts. Run returns only once the case and its cleanups have ended.
package caserun

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/conformance/report"
)

// T is the shared part of a case's handle, like testing.T: Errorf records
// a failure, Fatalf records one and ends the case, Skipf ends it as
// skipped. Run makes it.
type T struct {
	ctx context.Context

	mu         sync.Mutex
	failed     bool
	errors     []string
	logs       []string
	skipped    bool
	skipReason string
	cleanups   []func()
}

// Context is the case's context; it ends when the case times out.
func (t *T) Context() context.Context { return t.ctx }

// Errorf records a failure and goes on.
func (t *T) Errorf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = true
	t.errors = append(t.errors, fmt.Sprintf(format, args...))
}

// Fatalf records a failure and ends the goroutine that calls it: the
// case, when called from the case's goroutine. Helper goroutines must
// release what they hold in deferred calls.
func (t *T) Fatalf(format string, args ...any) {
	t.Errorf(format, args...)
	runtime.Goexit()
}

// Skipf ends the case as skipped. Cases skip only for a missing
// capability that the gate could not express.
func (t *T) Skipf(format string, args ...any) {
	t.mu.Lock()
	t.skipped, t.skipReason = true, fmt.Sprintf(format, args...)
	t.mu.Unlock()
	runtime.Goexit()
}

// Logf records a line in the case's log (the report's evidence).
func (t *T) Logf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.logs = append(t.logs, fmt.Sprintf(format, args...))
}

// Cleanup registers f to run when the case ends, last registered first.
func (t *T) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

// Eventually polls cond every 50 ms until it holds, and ends the case if
// it does not within the given time.
func (t *T) Eventually(within time.Duration, what string, cond func() bool) {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		select {
		case <-t.ctx.Done():
			t.Fatalf("%s: %v", what, t.ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// runCleanups runs the registered cleanups, last registered first,
// including any that a cleanup registers; a cleanup's panic is recorded
// as a failure.
func (t *T) runCleanups() {
	for {
		t.mu.Lock()
		if len(t.cleanups) == 0 {
			t.mu.Unlock()
			return
		}
		f := t.cleanups[len(t.cleanups)-1]
		t.cleanups = t.cleanups[:len(t.cleanups)-1]
		t.mu.Unlock()
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("cleanup panicked: %v", r)
				}
			}()
			f()
		}()
	}
}

// Case is one case as a suite hands it to Run.
type Case struct {
	// Result is the case's entry in the report with its identity filled
	// in (ID, Name, Level, Profile, Capability, Anchor); Run adds the
	// outcome.
	Result report.Result
	// Advertised tells whether the plugin advertises Result.Capability
	// (true for a case with none). A case whose capability is not
	// advertised is skipped, and says so, without running.
	Advertised bool
	// LeftOut, when set, says why the run leaves the case out (--skip):
	// it is reported as skipped with that reason, without running.
	LeftOut string
	// Timeout bounds the case and its cleanups.
	Timeout time.Duration
	// Watch, when set, is called just before the case runs (to take a
	// snapshot) and returns the function that, once the case and its
	// cleanups have ended, lists what the case left behind. Leaks fail
	// a case that was not skipped.
	Watch func() (leaks func() []string)
	// Body runs the case with base, the shared part of its handle,
	// which the suite wraps in its own.
	Body func(base *T)
}

// LeftOut is Case.LeftOut of a case with this id and name under the
// run's skip expression (nil: none).
func LeftOut(skip *regexp.Regexp, id, name string) string {
	if skip == nil || (!skip.MatchString(id) && !skip.MatchString(name)) {
		return ""
	}
	return fmt.Sprintf("left out by --skip %q", skip.String())
}

// Run runs c, in its own goroutine with a context that ends after
// c.Timeout (or when ctx does), and returns its result. A panic in the
// case or in a cleanup fails it. If the case does not end in time, Run
// records a failure and still waits for it: cases must heed their
// context.
func Run(ctx context.Context, c Case) (res report.Result) {
	res = c.Result
	start := time.Now()
	defer func() { res.Duration = time.Since(start) }()
	if c.LeftOut != "" {
		res.Status, res.Reason = report.Skip, c.LeftOut
		return res
	}
	if !c.Advertised {
		res.Status, res.Reason = report.Skip, fmt.Sprintf("the plugin does not advertise capability %s", res.Capability)
		return res
	}
	var leaks func() []string
	if c.Watch != nil {
		leaks = c.Watch()
	}
	cctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	t := &T{ctx: cctx}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer t.runCleanups()
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("case panicked: %v", r)
			}
		}()
		c.Body(t)
	}()
	select {
	case <-done:
	case <-cctx.Done():
		t.Errorf("case did not finish within %v", c.Timeout)
		<-done
	}
	t.mu.Lock()
	res.Log = t.logs
	switch {
	case t.skipped:
		res.Status, res.Reason = report.Skip, t.skipReason
	case t.failed:
		res.Status, res.Reason = report.Fail, strings.Join(t.errors, "\n")
	default:
		res.Status = report.Pass
	}
	t.mu.Unlock()
	if leaks == nil {
		return res
	}
	if l := leaks(); len(l) > 0 {
		res.Leaks = l
		if res.Status != report.Skip {
			res.Status = report.Fail
			if res.Reason == "" {
				res.Reason = "fail (leak): the case left residue behind"
			}
		}
	}
	return res
}

// Progress writes to w, unless it is nil, the line a suite prints for a
// finished case: its status, id and name.
func Progress(w io.Writer, res report.Result) {
	if w == nil {
		return
	}
	fmt.Fprintf(w, "%s %s %s\n", strings.ToUpper(string(res.Status)), res.ID, res.Name)
}
