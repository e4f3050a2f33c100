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
	"slices"
	"strings"
	"time"

	"github.com/paddock-dev/paddock/conformance/internal/caserun"
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
	// Skip, when set, leaves out the cases whose id or name matches: they
	// are reported as skipped, so a run that leaves out a MUST case of its
	// profile is not certifiable.
	Skip *regexp.Regexp
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
	caserun.Progress(e.cfg.Progress, res)
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

func (e *env) runCase(ctx context.Context, tc Case) report.Result {
	return caserun.Run(ctx, caserun.Case{
		Result:     report.Result{ID: tc.ID, Name: tc.Name, Level: tc.Level, Profile: tc.Profile, Capability: tc.Capability, Anchor: tc.Anchor},
		Advertised: e.capability(tc.Capability),
		LeftOut:    caserun.LeftOut(e.cfg.Skip, tc.ID, tc.Name),
		Timeout:    e.cfg.CaseTimeout,
		Watch: func() func() []string {
			before := snapshot()
			return func() []string { return e.waitNoLeaks(before, 10*time.Second) }
		},
		Body: func(base *caserun.T) { tc.Run(&T{T: base, env: e, id: tc.ID}) },
	})
}

// T is a case's handle, like testing.T: Errorf records a failure, Fatalf
// records one and ends the case, Skipf ends it as skipped. Context,
// Errorf, Fatalf, Skipf, Logf, Cleanup and Eventually are the ones every
// conformance suite shares.
type T struct {
	*caserun.T
	env *env
	id  string
}

// Client is the plugin's current client.
func (t *T) Client() *runtimev1.Client { return t.env.cfg.Target.Client() }

// Caps is the plugin's capabilities.
func (t *T) Caps() *runtimev1.CapabilitiesResponse { return t.env.caps }
