// Package runtimetest is the runtime plugin conformance suite: the cases
// of the conformance catalogue (RT-*) run black-box against any plugin
// that speaks plugins/runtime/v1. It is a library — Run takes a Target, the
// plugin under test launched by the caller — and the `paddock conformance
// runtime` command, which launches the plugin through plugins/pluginhost
// exactly as the node agent does.
//
// Each case gets a fresh context, runs in its own goroutine, and is
// followed by a leak check: processes, mounts and cgroups that appeared
// during the case and are still there fail it. A case is skipped only when
// the plugin does not advertise the capability it needs, and says so.
package runtimetest

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/conformance/report"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// Target is the plugin under test.
type Target interface {
	// Client is the connection to the plugin's current process.
	Client() *runtimev1.Client
	// PluginPID is the plugin process's pid.
	PluginPID() int
	// RestartPlugin kills the plugin process with SIGKILL, starts it again
	// and returns once the new process answers.
	RestartPlugin(ctx context.Context) error
	// PluginPath is the absolute path of the plugin binary; the
	// handshake case (RT-HS-001) starts it by itself.
	PluginPath() string
	// SocketPath is the unix socket the plugin's current process serves
	// on (RT-HS-006).
	SocketPath() string
	// Output is how many bytes the plugin has written since it was
	// launched: to stdout after its handshake, and to stderr (RT-HS-007).
	Output() (stdout, stderr int64)
	// Launch starts another instance of the plugin, configured like this
	// one, that keeps its state under stateDir (a short path), the way
	// the target was launched. The shutdown case (RT-HS-005) stops it;
	// launching again on the same stateDir after the Kill finds the
	// plugin's state there.
	Launch(ctx context.Context, stateDir string) (Instance, error)
}

// Instance is another instance of the plugin under test, from
// Target.Launch.
type Instance interface {
	Client() *runtimev1.Client
	PluginPID() int
	SocketPath() string
	// Kill stops the plugin for good, the way the agent does: go-plugin's
	// graceful shutdown, then SIGKILL after 2 s. It releases everything
	// Launch took.
	Kill(ctx context.Context) error
}

// Config configures a run.
type Config struct {
	Target Target
	// Profile is the profile claimed: core or sandboxed.
	Profile string
	// Focus, when set, runs only the cases whose id or name matches.
	Focus *regexp.Regexp
	// ImageArchive is an OCI archive of the test image (busybox), imported
	// through the plugin's image service before the cases run.
	ImageArchive string
	// Image is the test image's reference in that archive.
	Image string
	// VolumeRoot is a host directory the suite may create directories
	// in for the bind mounts of RT-CT-008; the plugin's configuration must
	// allow mounts from it. Without it RT-CT-008 fails and says so.
	VolumeRoot string
	// MaxPluginLogBytes caps what the plugin may write to stderr over
	// the whole run (RT-HS-007; default 16 MiB).
	MaxPluginLogBytes int64
	// MaxPluginRSSBytes caps the plugin process's resident memory while a
	// container floods its log (RT-EX-007; default 256 MiB).
	MaxPluginRSSBytes int64
	// CaseTimeout bounds one case (default 2 minutes).
	CaseTimeout time.Duration
	// Progress, when set, gets a line per finished case.
	Progress io.Writer
}

// Case is one conformance case.
type Case struct {
	ID         string
	Name       string
	Level      string // MUST or SHOULD
	Profile    string // core, sandboxed, feature:...
	Capability string // a Capabilities field that gates the case, or ""
	Anchor     string // the public test it mirrors
	// AfterAll cases run after every other case of the run and judge
	// what the whole run did; the report still lists them in id order.
	AfterAll bool
	Run      func(t *T)
}

// Run runs the suite and returns its report.
func Run(ctx context.Context, cfg Config) (*report.Report, error) {
	if cfg.CaseTimeout == 0 {
		cfg.CaseTimeout = 2 * time.Minute
	}
	if cfg.Profile == "" {
		cfg.Profile = "core"
	}
	if cfg.MaxPluginLogBytes == 0 {
		cfg.MaxPluginLogBytes = 16 << 20
	}
	if cfg.MaxPluginRSSBytes == 0 {
		cfg.MaxPluginRSSBytes = 256 << 20
	}
	if cfg.Profile != "core" && cfg.Profile != "sandboxed" {
		return nil, fmt.Errorf("--profile %q: want core or sandboxed", cfg.Profile)
	}
	c := cfg.Target.Client()
	info, err := c.Info(ctx, &runtimev1.InfoRequest{})
	if err != nil {
		return nil, fmt.Errorf("plugin Info: %w", err)
	}
	caps, err := c.Capabilities(ctx, &runtimev1.CapabilitiesRequest{})
	if err != nil {
		return nil, fmt.Errorf("plugin Capabilities: %w", err)
	}
	rep := &report.Report{Suite: "runtime", Plugin: info.Name, Version: info.Version, Profile: cfg.Profile, Started: time.Now()}
	env := &env{cfg: cfg, caps: caps}
	if cfg.ImageArchive != "" {
		if err := env.importImage(ctx, c); err != nil {
			return nil, err
		}
	}
	var last []Case
	for _, tc := range Cases() {
		if cfg.Focus != nil && !cfg.Focus.MatchString(tc.ID) && !cfg.Focus.MatchString(tc.Name) {
			continue
		}
		if tc.Profile == "sandboxed" && cfg.Profile != "sandboxed" {
			continue
		}
		if tc.AfterAll {
			last = append(last, tc)
			continue
		}
		env.record(ctx, rep, tc)
	}
	for _, tc := range last {
		env.record(ctx, rep, tc)
	}
	slices.SortStableFunc(rep.Results, func(a, b report.Result) int { return strings.Compare(a.ID, b.ID) })
	rep.Finish(time.Now())
	return rep, nil
}

// env is what every case of a run shares.
type env struct {
	cfg  Config
	caps *runtimev1.CapabilitiesResponse
}

// record runs a case and adds its result to rep.
func (e *env) record(ctx context.Context, rep *report.Report, tc Case) {
	res := e.runCase(ctx, tc)
	rep.Results = append(rep.Results, res)
	if e.cfg.Progress != nil {
		fmt.Fprintf(e.cfg.Progress, "%s %s %s\n", strings.ToUpper(string(res.Status)), tc.ID, tc.Name)
	}
}

// capability reports whether the plugin advertises a Capabilities field.
func (e *env) capability(name string) bool {
	switch name {
	case "":
		return true
	case "exec":
		return e.caps.Exec
	case "exec_tty":
		return e.caps.ExecTty
	case "signals":
		return e.caps.Signals
	case "user_namespaces":
		return e.caps.UserNamespaces
	case "update_resources":
		return e.caps.UpdateResources
	case "read_only_rootfs":
		return e.caps.ReadOnlyRootfs
	case "recover":
		return !e.caps.ContainersTiedToPlugin
	}
	return false
}

func (e *env) runCase(ctx context.Context, tc Case) (res report.Result) {
	res = report.Result{ID: tc.ID, Name: tc.Name, Level: tc.Level, Profile: tc.Profile, Capability: tc.Capability, Anchor: tc.Anchor}
	start := time.Now()
	defer func() { res.Duration = time.Since(start) }()
	if !e.capability(tc.Capability) {
		res.Status, res.Reason = report.Skip, fmt.Sprintf("the plugin does not advertise capability %s", tc.Capability)
		return res
	}
	before := snapshot()
	cctx, cancel := context.WithTimeout(ctx, e.cfg.CaseTimeout)
	defer cancel()
	t := &T{ctx: cctx, env: e, id: tc.ID}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer t.runCleanups()
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("case panicked: %v", r)
			}
		}()
		tc.Run(t)
	}()
	select {
	case <-done:
	case <-cctx.Done():
		t.Errorf("case did not finish within %v", e.cfg.CaseTimeout)
		<-done
	}
	res.Log = t.logs
	switch {
	case t.skipped:
		res.Status, res.Reason = report.Skip, t.skipReason
	case t.failed:
		res.Status, res.Reason = report.Fail, strings.Join(t.errors, "\n")
	default:
		res.Status = report.Pass
	}
	if leaks := e.waitNoLeaks(before, 10*time.Second); len(leaks) > 0 {
		res.Leaks = leaks
		if res.Status != report.Skip {
			res.Status = report.Fail
			if res.Reason == "" {
				res.Reason = "fail (leak): the case left residue behind"
			}
		}
	}
	return res
}

// T is a case's handle, like testing.T: Errorf records a failure, Fatalf
// records one and ends the case, Skipf ends it as skipped.
type T struct {
	ctx context.Context
	env *env
	id  string

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

// Client is the plugin's current client.
func (t *T) Client() *runtimev1.Client { return t.env.cfg.Target.Client() }

// Caps is the plugin's capabilities.
func (t *T) Caps() *runtimev1.CapabilitiesResponse { return t.env.caps }

// Errorf records a failure and goes on.
func (t *T) Errorf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = true
	t.errors = append(t.errors, fmt.Sprintf(format, args...))
}

// Fatalf records a failure and ends the case.
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

// Logf records a line in the case's log.
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

// Eventually polls cond every 50 ms until it holds or within passes.
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
