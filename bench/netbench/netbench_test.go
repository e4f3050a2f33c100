package netbench

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/paddock-dev/paddock/bench/internal/mdreport/mdreporttest"
	"github.com/paddock-dev/paddock/internal/testbin"
	"github.com/paddock-dev/paddock/internal/testlock"
)

// TestRunSmoke runs B6-DATAPATH with tiny durations against the real
// bridge plugin: every workload has a positive number on both paths, the
// report and its section of a benchmarks file are well-formed, and the
// run leaves no bridge, nftables table, namespace or directory behind.
// It holds the machine-wide test lock and calls collect, which (unlike
// Run) does not take it again.
func TestRunSmoke(t *testing.T) {
	if os.Geteuid() != 0 {
		const why = "B6-DATAPATH makes network namespaces, veth pairs, a bridge and nftables tables and needs root"
		if os.Getenv("CI") == "true" {
			t.Fatal(why + ", and CI=true")
		}
		t.Skip("skipping: " + why)
	}
	testlock.Machine(t)
	plugin := testbin.Binary(t, "paddock-net-bridge")
	// Not t.TempDir(): the plugin's socket path lies below the data
	// directory and must stay short.
	dataDir, err := os.MkdirTemp("", "b6n")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dataDir) })
	linksBefore := links(t)

	doc := filepath.Join(t.TempDir(), "docs", "benchmarks.md")
	var out bytes.Buffer
	cfg := DefaultConfig()
	cfg.Plugin, cfg.DataDir, cfg.Write, cfg.Out = plugin, dataDir, doc, &out
	cfg.Duration, cfg.Warmup, cfg.Reps, cfg.RoundTrips = 200*time.Millisecond, 50*time.Millisecond, 2, 200
	cfg.Command = "paddock-bench --benchmarks B6-DATAPATH --datapath-duration 200ms"
	if testing.Verbose() {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	res, err := collect(t.Context(), cfg)
	if err != nil {
		t.Fatalf("collect: %v", err)
	}

	if len(res.streams) != 2 {
		t.Fatalf("%d throughput workloads, want 2 (1 and 8 streams)", len(res.streams))
	}
	for _, s := range res.streams {
		for p, name := range []string{"bridge", "floor"} {
			if len(s.gbps[p]) != cfg.Reps {
				t.Errorf("%d streams, %s: %d runs, want %d", s.streams, name, len(s.gbps[p]), cfg.Reps)
			}
			for _, v := range s.gbps[p] {
				if !(v > 0) {
					t.Errorf("%d streams, %s: %v Gbit/s, want a positive number", s.streams, name, v)
				}
			}
		}
	}
	for p, name := range []string{"bridge", "floor"} {
		if len(res.rr[p]) != cfg.Reps*cfg.RoundTrips {
			t.Errorf("%s: %d round trips, want %d", name, len(res.rr[p]), cfg.Reps*cfg.RoundTrips)
		}
		for _, d := range res.rr[p] {
			if d <= 0 {
				t.Fatalf("%s: a round trip of %v, want positive", name, d)
			}
		}
	}
	if res.mtu < 576 || !res.bridge.addrB.IsValid() || !strings.HasPrefix(res.bridge.addrB.String(), "10.254.7.") {
		t.Errorf("bridge path: MTU %d, pod B %v; want the plugin's MTU and an address of 10.254.7.0/24", res.mtu, res.bridge.addrB)
	}

	if err := res.publish(); err != nil {
		t.Fatalf("publish: %v", err)
	}
	report := out.String()
	mdreporttest.Check(t, report, doc, SectionName,
		"## B6-DATAPATH: pod-to-pod TCP over the bridge plugin against a bare veth pair",
		cfg.Command,
		"| TCP throughput, 1 stream (Gbit/s) |",
		"| TCP throughput, 8 streams (Gbit/s) |",
		"| TCP round trip, 1 byte, p50 (µs) |",
		"| TCP round trip, 1 byte, p99 (µs) |",
		"| bridge plugin | 400 |",
		"| bare veth pair | 400 |",
		"### Machine",
	)
	for _, line := range strings.Split(report, "\n") {
		if strings.HasPrefix(line, "| TCP ") {
			cells := strings.Split(line, "|")
			for _, c := range cells[2:4] {
				if v := strings.TrimSpace(c); v == "" || v == "0.00" || v == "0.0" || strings.HasPrefix(v, "-") {
					t.Errorf("row %q: cell %q, want a positive number", line, v)
				}
			}
		}
	}

	entries, err := os.ReadDir(dataDir)
	if err != nil || len(entries) != 0 {
		t.Errorf("data dir after the run: %d entries (%v), want it empty", len(entries), err)
	}
	for name := range links(t) {
		if !linksBefore[name] && strings.HasPrefix(name, "pdb6n") {
			t.Errorf("bridge %s left after the run", name)
		}
	}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if strings.HasPrefix(tb.Name, "paddock-b6n-") {
			t.Errorf("nftables table %s left after the run", tb.Name)
		}
	}
}

// links returns the names of the interfaces of this namespace.
func links(t *testing.T) map[string]bool {
	t.Helper()
	ls, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, l := range ls {
		out[l.Attrs().Name] = true
	}
	return out
}

func TestConfigCheck(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Config)
		field  string
	}{
		{"plugin", func(c *Config) { c.Plugin = "" }, "plugin"},
		{"duration", func(c *Config) { c.Duration = 0 }, "duration"},
		{"warmup", func(c *Config) { c.Warmup = -time.Second }, "warmup"},
		{"reps", func(c *Config) { c.Reps = 0 }, "reps"},
		{"no streams", func(c *Config) { c.Streams = nil }, "streams"},
		{"streams", func(c *Config) { c.Streams = []int{1, 0} }, "streams"},
		{"round trips", func(c *Config) { c.RoundTrips = 0 }, "round trips"},
		{"timeout", func(c *Config) { c.Timeout = 0 }, "timeout"},
		{"pod CIDR syntax", func(c *Config) { c.PodCIDR = "10.254.7.1/24" }, "pod CIDR"},
		{"pod CIDR size", func(c *Config) { c.PodCIDR = "10.254.7.0/30" }, "pod CIDR"},
		{"pod CIDR outside", func(c *Config) { c.PodCIDR = "10.253.7.0/24" }, "pod CIDR"},
		{"cluster CIDR", func(c *Config) { c.ClusterCIDR = "fd00::/64" }, "cluster CIDR"},
		{"service CIDR", func(c *Config) { c.ServiceCIDR = "10.254.128.0/20" }, "service CIDR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.change(&cfg)
			if err := cfg.check(); err == nil || !strings.HasPrefix(err.Error(), tc.field+":") {
				t.Errorf("check() = %v, want an error naming %s", err, tc.field)
			}
		})
	}
	cfg := DefaultConfig()
	if err := cfg.check(); err != nil {
		t.Errorf("DefaultConfig().check() = %v", err)
	}
}
