// Command testplugin is a runtime plugin for pluginhost's tests. It
// implements Identity and nothing else, and misbehaves on request.
//
// TESTPLUGIN_MODE (environment) picks its behaviour before the handshake:
//
//	""            a normal plugin speaking API v1
//	v9            speaks only API v9
//	nohandshake   never prints the handshake (sleeps)
//	exit          prints a complaint to stderr and exits 3 at once
//
// Its configuration (JSON) steers the rest:
//
//	{"invalid": true}        SetConfig fails with InvalidArgument
//	{"crash": true}          exits 4 inside SetConfig
//	{"crashAfter": "200ms"}  exits 5 that long after SetConfig, while the
//	"crashTimes": N          counter in "counterFile" is below N
//	"counterFile": PATH      (each crash adds one)
//	{"logEvery": "20ms"}     logs a "tick" line that often
//	{"stdout": "text"}       writes text to os.Stdout (go-plugin's stdio
//	                         stream) in SetConfig
//	{"rawStdout": "text"}    writes text to file descriptor 1 (the
//	                         handshake pipe) in SetConfig
//
// SetConfig writes what it was given to STATE_DIR/setconfig.json.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"google.golang.org/grpc"
)

func main() {
	mode := os.Getenv("TESTPLUGIN_MODE")
	switch mode {
	case "nohandshake":
		time.Sleep(time.Hour)
		return
	case "exit":
		fmt.Fprintln(os.Stderr, "testplugin: refusing to start (TESTPLUGIN_MODE=exit)")
		os.Exit(3)
	}
	// The log goes to the process's stderr as it is now: Serve swaps
	// os.Stderr for a pipe of its own afterwards.
	log := hclog.New(&hclog.LoggerOptions{Name: "testplugin", Output: os.Stderr, JSONFormat: true, Level: hclog.Info})
	runtimev1.Serve(&testPlugin{mode: mode, log: log})
}

type config struct {
	Invalid     bool   `json:"invalid"`
	Crash       bool   `json:"crash"`
	CrashAfter  string `json:"crashAfter"`
	CrashTimes  int    `json:"crashTimes"`
	CounterFile string `json:"counterFile"`
	LogEvery    string `json:"logEvery"`
	Stdout      string `json:"stdout"`
	RawStdout   string `json:"rawStdout"`
}

type testPlugin struct {
	runtimev1.UnimplementedIdentityServer
	runtimev1.UnimplementedRuntimeServer
	runtimev1.UnimplementedImagesServer

	mode string
	log  hclog.Logger
	once sync.Once
}

var _ runtimev1.Plugin = (*testPlugin)(nil)

func (p *testPlugin) Info(context.Context, *runtimev1.InfoRequest) (*runtimev1.InfoResponse, error) {
	p.log.Info("info called", "pid", os.Getpid())
	versions := []string{runtimev1.APIVersion}
	if p.mode == "v9" {
		versions = []string{"v9"}
	}
	return &runtimev1.InfoResponse{Name: "testplugin", Version: "0.0.1", ApiVersions: versions, ConfigSchema: `{"type":"object"}`}, nil
}

func (p *testPlugin) Capabilities(context.Context, *runtimev1.CapabilitiesRequest) (*runtimev1.CapabilitiesResponse, error) {
	return &runtimev1.CapabilitiesResponse{IsolationClass: runtimev1.IsolationClass_ISOLATION_CLASS_NAMESPACE}, nil
}

func (p *testPlugin) SetConfig(_ context.Context, r *runtimev1.SetConfigRequest) (*runtimev1.SetConfigResponse, error) {
	if r.ApiVersion != runtimev1.APIVersion {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "api_version", fmt.Sprintf("%q: this plugin speaks %s", r.ApiVersion, runtimev1.APIVersion))
	}
	var c config
	if len(r.Config) > 0 {
		if err := json.Unmarshal(r.Config, &c); err != nil {
			return nil, errdefs.Field(errdefs.ErrInvalidArgument, "config", err.Error())
		}
	}
	if c.Invalid {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "config.invalid", "is set: remove it")
	}
	if c.Crash {
		p.log.Error("crashing in SetConfig as configured")
		os.Exit(4)
	}
	seen, _ := json.Marshal(map[string]any{"apiVersion": r.ApiVersion, "config": json.RawMessage(orEmpty(r.Config)), "stateDir": r.StateDir})
	if err := os.WriteFile(filepath.Join(r.StateDir, "setconfig.json"), seen, 0o600); err != nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "state dir: "+err.Error())
	}
	os.Stdout.WriteString(c.Stdout)
	os.NewFile(1, "stdout").WriteString(c.RawStdout)
	p.once.Do(func() { p.apply(c) })
	p.log.Info("configured", "api_version", r.ApiVersion)
	return &runtimev1.SetConfigResponse{}, nil
}

func orEmpty(b []byte) []byte {
	if len(b) == 0 {
		return []byte("{}")
	}
	return b
}

// apply starts what the configuration asks for in the background.
func (p *testPlugin) apply(c config) {
	if d, err := time.ParseDuration(c.CrashAfter); err == nil {
		go func() {
			time.Sleep(d)
			if c.CounterFile != "" {
				b, _ := os.ReadFile(c.CounterFile)
				n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
				if n >= c.CrashTimes {
					return
				}
				os.WriteFile(c.CounterFile, []byte(strconv.Itoa(n+1)), 0o600)
			}
			p.log.Error("crashing as configured", "after", d)
			os.Exit(5)
		}()
	}
	if d, err := time.ParseDuration(c.LogEvery); err == nil {
		go func() {
			for n := 0; ; n++ {
				time.Sleep(d)
				p.log.Info("tick", "n", n)
			}
		}()
	}
}

func (p *testPlugin) Health(_ *runtimev1.HealthRequest, s grpc.ServerStreamingServer[runtimev1.HealthEvent]) error {
	if err := s.Send(&runtimev1.HealthEvent{Healthy: true, Description: "ok", Timestamp: time.Now().UnixNano()}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}
