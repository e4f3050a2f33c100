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
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/conformance/report"
	"github.com/paddock-dev/paddock/conformance/runtimetest"
	"github.com/paddock-dev/paddock/conformance/runtimetest/faulty"
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
// the suite needs to run containers.
func prerequisites(t *testing.T) string {
	t.Helper()
	archive, _ := filepath.Abs("../../build/images/busybox.tar")
	var missing string
	switch {
	case os.Geteuid() != 0:
		missing = "root"
	case func() bool { _, err := exec.LookPath("runc"); return err != nil }():
		missing = "runc (Debian package runc)"
	case func() bool { _, err := os.Stat(archive); return err != nil }():
		missing = archive + " (make testimages)"
	}
	if missing != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the conformance suite's tests need %s, and CI=true", missing)
		}
		t.Skipf("skipping: needs %s", missing)
	}
	return archive
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
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	inst, err := host.Launch(ctx, pluginhost.RuntimeKind, "under-test", plugin, []byte("{}"))
	if err != nil {
		t.Fatalf("launch %s: %v", plugin, err)
	}
	t.Cleanup(func() { inst.Kill(context.Background()) })
	rep, err := runtimetest.Run(ctx, runtimetest.Config{
		Target:       runtimetest.HostTarget(inst),
		Focus:        regexp.MustCompile(focus),
		ImageArchive: archive,
		Image:        "paddock.dev/test/busybox:latest",
		CaseTimeout:  time.Minute,
	})
	if err != nil {
		t.Fatalf("runtimetest.Run: %v", err)
	}
	return rep
}

func failed(rep *report.Report) []string {
	var ids []string
	for _, r := range rep.Results {
		if r.Status == report.Fail {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

// The cases the fault tests run: one broken by each fault, and a control.
const focus = `^(RT-HS-002|RT-SB-001|RT-CT-003|RT-ID-001|RT-EX-006)$`

func TestRuncPassesTheFocusedCases(t *testing.T) {
	rep := suite(t, runcPlugin, nil, focus)
	if len(rep.Results) != 5 {
		t.Fatalf("ran %d cases, want 5", len(rep.Results))
	}
	if f := failed(rep); len(f) > 0 {
		var s strings.Builder
		rep.WriteSummary(&s)
		t.Errorf("runc failed %v:\n%s", f, s.String())
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
		{faulty.LeakProcess, []string{"RT-CT-003", "RT-EX-006", "RT-ID-001", "RT-SB-001"}},
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
			}, focus)
			got := failed(rep)
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				var s strings.Builder
				rep.WriteSummary(&s)
				t.Errorf("with fault %s the failed cases are %v, want %v:\n%s", tc.fault, got, tc.want, s.String())
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
