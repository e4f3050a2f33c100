package networktest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/paddock-dev/paddock/conformance/internal/suitetest"
	"github.com/paddock-dev/paddock/conformance/networktest"
	"github.com/paddock-dev/paddock/conformance/networktest/faulty"
	"github.com/paddock-dev/paddock/conformance/report"
	"github.com/paddock-dev/paddock/internal/testbin"
	"github.com/paddock-dev/paddock/internal/testlock"
	"github.com/paddock-dev/paddock/plugins/pluginhost"
	"github.com/vishvananda/netlink"
)

// faultyPlugin is the faulty plugin, built once for the package's tests.
var faultyPlugin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pdnconf")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	faultyPlugin = filepath.Join(dir, "faulty")
	build := exec.Command("go", "build", "-o", faultyPlugin, "./faulty/cmd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ./faulty/cmd:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// skipOrFail skips the test outside CI and fails it under CI=true.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format+" (CI=true)", args...)
	}
	t.Skipf("skipping: "+format, args...)
}

// bridgePlugin returns the bridge plugin's binary, after checking that
// this machine can run the suite: root and br_netfilter.
func bridgePlugin(t *testing.T) string {
	t.Helper()
	switch {
	case os.Geteuid() != 0:
		skipOrFail(t, "the network suite needs root")
	case !exists("/proc/sys/net/bridge"):
		skipOrFail(t, "the bridge plugin needs br_netfilter (modprobe br_netfilter)")
	}
	if bin := os.Getenv("PADDOCK_BIN"); bin != "" {
		p := filepath.Join(filepath.Dir(bin), "paddock-net-bridge")
		if !exists(p) {
			t.Fatalf("PADDOCK_BIN is set but %s is missing (make build)", p)
		}
		return p
	}
	if !exists(filepath.Join(testbin.Root(t), "cmd", "paddock-net-bridge")) {
		skipOrFail(t, "cmd/paddock-net-bridge is missing")
	}
	return testbin.Binary(t, "paddock-net-bridge")
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

var runs atomic.Int64

// suite runs the cases matching focus against plugin, launched through a
// plugin host made with networktest.HostConfig, with its own bridge,
// nftables table and pod range; config makes the plugin's configuration
// from the bridge's.
func suite(t *testing.T, plugin string, config func(bridge []byte) []byte, focus string) *report.Report {
	t.Helper()
	testlock.Machine(t)
	n := runs.Add(1)
	name := fmt.Sprintf("pdnc%d", os.Getpid()%10000*10+int(n)%10)
	bridge, err := json.Marshal(map[string]string{"bridge": name, "table": name})
	if err != nil {
		t.Fatal(err)
	}
	state, err := os.MkdirTemp("", "pdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	host, err := pluginhost.New(networktest.HostConfig(pluginhost.Config{StateDir: state, Logger: slog.New(slog.DiscardHandler)}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	inst, err := host.Launch(ctx, pluginhost.NetworkKind, "under-test", plugin, config(bridge))
	if err != nil {
		t.Fatalf("launch %s: %v", plugin, err)
	}
	t.Cleanup(func() { removeDataplane(t, name) })
	t.Cleanup(func() { inst.Kill(context.Background()) })
	sub := 100 + n%100
	rep, err := networktest.Run(ctx, networktest.Config{
		Target:      networktest.HostTarget(inst),
		Focus:       regexp.MustCompile(focus),
		PodCIDR:     fmt.Sprintf("10.252.%d.0/24", sub),
		CaseTimeout: time.Minute,
	})
	if err != nil {
		t.Fatalf("networktest.Run: %v", err)
	}
	return rep
}

// removeDataplane removes what the bridge plugin leaves in the kernel
// for the next plugin process: its bridge and its nftables tables.
func removeDataplane(t *testing.T, name string) {
	if l, err := netlink.LinkByName(name); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			t.Errorf("remove the bridge %s: %v", name, err)
		}
	}
	conn, err := nftables.New()
	if err != nil {
		t.Errorf("nftables: %v", err)
		return
	}
	tables, err := conn.ListTables()
	if err != nil {
		t.Errorf("list nftables tables: %v", err)
		return
	}
	for _, tb := range tables {
		if tb.Name == name {
			conn.DelTable(tb)
		}
	}
	if err := conn.Flush(); err != nil {
		t.Errorf("remove the nftables tables %s: %v", name, err)
	}
}

func asIs(bridge []byte) []byte { return bridge }

// TestBridgePassesEveryCase runs the whole suite against the bridge
// plugin: every case runs (the bridge advertises every capability the
// cases need) and passes.
func TestBridgePassesEveryCase(t *testing.T) {
	rep := suite(t, bridgePlugin(t), asIs, ".")
	if len(rep.Results) != len(networktest.Cases()) {
		t.Errorf("ran %d cases, want %d", len(rep.Results), len(networktest.Cases()))
	}
	if f, s := suitetest.WithStatus(rep, report.Fail), suitetest.WithStatus(rep, report.Skip); len(f)+len(s) > 0 || !rep.Certified {
		t.Errorf("the bridge failed %v and skipped %v:\n%s", f, s, suitetest.Summary(rep))
	}
}

// The cases the fault tests run: the ones the faults break, and a
// control (NP-AT-001) that none breaks but the leak.
var faultCases = []string{"NP-AT-001", "NP-AT-002", "NP-CK-001", "NP-DT-001", "NP-GC-001", "NP-MT-001", "NP-NP-001", "NP-ST-001", "NP-VR-001"}

// TestSuiteCatchesFaults runs those cases against the faulty plugin,
// which forwards to the bridge with one fault injected, and checks that
// exactly the cases the fault breaks fail.
func TestSuiteCatchesFaults(t *testing.T) {
	bridge := bridgePlugin(t)
	for _, tc := range []struct {
		fault string
		extra []string // cases run for this fault only (slow ones)
		only  []string // when set, the cases run for this fault instead
		want  []string
	}{
		{fault: faulty.VersionAny, want: []string{"NP-VR-001"}},
		{fault: faulty.AttachDuplicateOK, want: []string{"NP-AT-002"}},
		{fault: faulty.DetachNotIdempotent, want: []string{"NP-DT-001"}},
		{fault: faulty.CheckAlwaysOK, want: []string{"NP-CK-001"}},
		{fault: faulty.GCNoop, want: []string{"NP-GC-001"}},
		{fault: faulty.StatusAlwaysOK, want: []string{"NP-ST-001"}},
		{fault: faulty.PolicyNoop, want: []string{"NP-NP-001"}},
		{fault: faulty.NoIsolation, extra: []string{"NP-RS-001"}, want: []string{"NP-MT-001", "NP-RS-001"}},
		// NP-AT-001 fails through the leak check alone, NP-DT-002
		// through its own check as well.
		{fault: faulty.LeakOnDetach, only: []string{"NP-AT-001", "NP-DT-002"}, want: []string{"NP-AT-001", "NP-DT-002"}},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			config := func(bridgeConfig []byte) []byte {
				b, err := json.Marshal(faulty.Config{Target: bridge, Faults: []string{tc.fault}, Config: bridgeConfig})
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			cases := slices.Concat(faultCases, tc.extra)
			if tc.only != nil {
				cases = tc.only
			}
			rep := suite(t, faultyPlugin, config, suitetest.FocusOn(cases))
			got := suitetest.WithStatus(rep, report.Fail)
			if !slices.Equal(got, tc.want) {
				t.Errorf("with fault %s the failed cases are %v, want %v:\n%s", tc.fault, got, tc.want, suitetest.Summary(rep))
			}
			if s := suitetest.WithStatus(rep, report.Skip); len(s) > 0 {
				t.Errorf("with fault %s cases were skipped: %v", tc.fault, s)
			}
		})
	}
}

// TestFaultyRefusesBadConfig: the faulty plugin names what is wrong in
// its configuration.
func TestFaultyRefusesBadConfig(t *testing.T) {
	for _, tc := range []struct{ config, want string }{
		{`{}`, "config.target"},
		{`{"target":"/bin/true","faults":["nope"]}`, "unknown fault"},
		{`[1]`, "config"},
	} {
		state, err := os.MkdirTemp("", "pdn")
		if err != nil {
			t.Fatal(err)
		}
		host, err := pluginhost.New(pluginhost.Config{StateDir: state, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		inst, err := host.Launch(t.Context(), pluginhost.NetworkKind, "faulty", faultyPlugin, []byte(tc.config))
		if err == nil {
			inst.Kill(context.Background())
		}
		host.Close()
		os.RemoveAll(state)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("launch with %s = %v, want an error naming %q", tc.config, err, tc.want)
		}
	}
}
