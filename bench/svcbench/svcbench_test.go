package svcbench

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/bench/internal/mdreport/mdreporttest"
)

// TestRunSmall runs B6 at tiny sizes, through Update and through a real
// API server: every change is seen by a real connection, and the report
// and its section of a benchmarks file are well-formed.
func TestRunSmall(t *testing.T) {
	var missing string
	if os.Geteuid() != 0 {
		missing = "B6 needs root (network namespaces and nftables)"
	} else if _, err := exec.LookPath("ip"); err != nil {
		missing = "B6 needs the ip command (Debian package iproute2)"
	}
	if missing != "" {
		if os.Getenv("CI") == "true" {
			t.Fatal(missing)
		}
		t.Skip(missing)
	}
	doc := filepath.Join(t.TempDir(), "docs", "benchmarks.md")
	var out bytes.Buffer
	cfg := DefaultConfig()
	cfg.Sizes, cfg.Changes, cfg.FirstPackets, cfg.Timeout = []int{20, 60}, 10, 20, 5*time.Minute
	cfg.DataDir, cfg.Write, cfg.Out, cfg.Command = t.TempDir(), doc, &out, "paddock-bench --benchmarks B6 --b6-sizes 20,60"
	if testing.Verbose() {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if err := Run(context.Background(), cfg); err != nil {
		t.Fatalf("Run: %v", err)
	}
	report := out.String()
	mdreporttest.Check(t, report, doc, SectionName,
		"## B6: service programming latency (nftables service proxy, 20 and 60 services × 10 endpoints)",
		"paddock-bench --benchmarks B6 --b6-sizes 20,60",
		"| 60 | Proxy.Update |",
		"| 60 | API server → informers → Proxy |",
		"| 60 | floor: one-rule DNAT insert → first connect | 10 |",
		"| 20 | first packet via the cluster IP | 20 |",
		"First-packet p50 from 20 to 60 services",
		"### Machine",
	)
	entries, err := os.ReadDir(cfg.DataDir)
	if err != nil || len(entries) != 0 {
		t.Errorf("data dir after the run: %d entries (%v), want it empty", len(entries), err)
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), "pdkp-") {
		t.Errorf("network namespaces left after the run:\n%s", out)
	}
}

func TestConfigCheck(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Config)
		field  string
	}{
		{"no sizes", func(c *Config) { c.Sizes = nil }, "sizes"},
		{"size", func(c *Config) { c.Sizes = []int{1} }, "sizes"},
		{"endpoints", func(c *Config) { c.Endpoints = 11 }, "endpoints"},
		{"changes", func(c *Config) { c.Changes = 0 }, "changes"},
		{"first packets", func(c *Config) { c.FirstPackets = 0 }, "first packets"},
		{"timeout", func(c *Config) { c.Timeout = 0 }, "timeout"},
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
