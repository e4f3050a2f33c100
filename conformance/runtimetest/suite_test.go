package runtimetest_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/conformance/internal/suitetest"
	"github.com/paddock-dev/paddock/conformance/report"
	"github.com/paddock-dev/paddock/conformance/runtimetest"
	"github.com/paddock-dev/paddock/conformance/runtimetest/faulty"
	"github.com/paddock-dev/paddock/internal/testbin"
	"github.com/paddock-dev/paddock/internal/testlock"
	"github.com/paddock-dev/paddock/plugins/pluginhost"
)

// binaries built once for the package's tests.
var runcPlugin, faultyPlugin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pdconf")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	runcPlugin, faultyPlugin = filepath.Join(dir, "paddock-runtime-runc"), filepath.Join(dir, "faulty")
	for bin, pkg := range map[string]string{runcPlugin: "../../cmd/paddock-runtime-runc", faultyPlugin: "./faulty/cmd"} {
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", pkg, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// prerequisites skips outside CI, and fails under CI=true, without what
// the suite needs to run containers; it returns the test image archive.
func prerequisites(t *testing.T) string {
	t.Helper()
	return testbin.Containers(t)
}

// suite runs the cases matching focus against plugin, launched through
// the plugin host with env set, and returns the ids that failed.
func suite(t *testing.T, plugin string, env map[string]string, focus string) *report.Report {
	t.Helper()
	archive := prerequisites(t)
	testlock.Machine(t)
	for k, v := range env {
		t.Setenv(k, v)
	}
	state, err := os.MkdirTemp("", "pdh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	host, err := pluginhost.New(pluginhost.Config{StateDir: state, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })
	volumes, err := os.MkdirTemp("", "pdv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(volumes) })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	config := fmt.Appendf(nil, `{"allowedMountRoots":[%q]}`, volumes)
	inst, err := host.Launch(ctx, pluginhost.RuntimeKind, "under-test", plugin, config)
	if err != nil {
		t.Fatalf("launch %s: %v", plugin, err)
	}
	t.Cleanup(func() { inst.Kill(context.Background()) })
	rep, err := runtimetest.Run(ctx, runtimetest.Config{
		Target:       runtimetest.HostTarget(inst),
		Focus:        regexp.MustCompile(focus),
		ImageArchive: archive,
		Image:        "paddock.dev/test/busybox:latest",
		VolumeRoot:   volumes,
		CaseTimeout:  time.Minute,
	})
	if err != nil {
		t.Fatalf("runtimetest.Run: %v", err)
	}
	return rep
}

func failed(rep *report.Report) []string  { return suitetest.WithStatus(rep, report.Fail) }
func skipped(rep *report.Report) []string { return suitetest.WithStatus(rep, report.Skip) }

// The cases the fault tests run: the ones the faults break, and a
// control.
var faultCases = []string{"RT-HS-002", "RT-HS-007", "RT-CAP-003", "RT-SB-001", "RT-CT-003", "RT-CT-008", "RT-ID-001", "RT-EX-004", "RT-EX-006"}

// The cases of the plugin process, which the faulty proxy cannot pass
// through to the plugin behind it, and the slow log flood: run on runc
// only.
var runcOnlyCases = []string{"RT-HS-001", "RT-HS-005", "RT-HS-006", "RT-EX-007"}

// TestRuncPassesTheFocusedCases runs the cases the fault tests need and
// the plugin-process cases against runc: all pass, and a case is skipped
// only for exec_tty, which runc may not advertise.
func TestRuncPassesTheFocusedCases(t *testing.T) {
	ids := slices.Concat(faultCases, runcOnlyCases)
	rep := suite(t, runcPlugin, nil, suitetest.FocusOn(ids))
	if len(rep.Results) != len(ids) {
		t.Fatalf("ran %d cases, want %d", len(rep.Results), len(ids))
	}
	if f := failed(rep); len(f) > 0 {
		t.Errorf("runc failed %v:\n%s", f, suitetest.Summary(rep))
	}
	if sk := skipped(rep); len(sk) > 0 && !slices.Equal(sk, []string{"RT-EX-004"}) {
		t.Errorf("runc skipped %v, want none but RT-EX-004 (exec_tty):\n%s", sk, suitetest.Summary(rep))
	}
}

// TestSuiteCatchesFaults runs the same cases against the faulty plugin,
// which forwards to runc with one fault injected, and checks that exactly
// the case the fault breaks fails.
func TestSuiteCatchesFaults(t *testing.T) {
	for _, tc := range []struct {
		fault string
		want  []string
	}{
		{faulty.StopMissingFails, []string{"RT-ID-001"}},
		{faulty.ExitCodeOffByOne, []string{"RT-CT-003"}},
		{faulty.NoLogTimestamps, []string{"RT-EX-006"}},
		{faulty.TTYIgnoreResize, []string{"RT-EX-004"}},
		{faulty.MountIgnoreReadOnly, []string{"RT-CT-008"}},
		{faulty.StdoutNoise, []string{"RT-HS-007"}},
		{faulty.HealthNoConditions, []string{"RT-CAP-003"}},
		{faulty.LeakProcess, []string{"RT-CT-003", "RT-CT-008", "RT-EX-004", "RT-EX-006", "RT-ID-001", "RT-SB-001"}},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			state, err := os.MkdirTemp("", "pdf")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(state) })
			rep := suite(t, faultyPlugin, map[string]string{
				faulty.EnvTarget: runcPlugin,
				faulty.EnvFaults: tc.fault,
				faulty.EnvState:  state,
			}, suitetest.FocusOn(faultCases))
			got := failed(rep)
			slices.Sort(got)
			// A case the capabilities skip cannot fail: RT-EX-004 runs
			// only once runc advertises exec_tty.
			want := slices.DeleteFunc(slices.Clone(tc.want), func(id string) bool { return slices.Contains(skipped(rep), id) })
			if len(want) < len(tc.want) {
				t.Logf("skipped for a capability, so not expected to fail: %v", skipped(rep))
			}
			if !slices.Equal(got, want) {
				t.Errorf("with fault %s the failed cases are %v, want %v:\n%s", tc.fault, got, want, suitetest.Summary(rep))
			}
			if tc.fault == faulty.LeakProcess {
				killStrays(t)
			}
		})
	}
}

// killStrays ends the processes the leak-process fault left behind.
func killStrays(t *testing.T) {
	out, _ := exec.Command("pkill", "-f", "^sleep 3600$").CombinedOutput()
	t.Logf("pkill stray sleeps: %s", out)
}
