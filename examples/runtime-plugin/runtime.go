package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"google.golang.org/grpc"
)

// Runtime is the plugin. Everything it knows is in memory: a plugin whose
// containers die with it has nothing worth keeping across a restart.
//
// Locking: mu guards the maps and every field of the sandboxes and
// containers in them that changes after creation. A container's lifecycle
// mutex serialises Start, Stop and Remove of that container; it is taken
// before mu, never while mu is held. Nothing waits for a process or a
// timer while holding mu.
type Runtime struct {
	log *slog.Logger

	mu         sync.Mutex
	root       string // images/ and containers/ live here; "" until SetConfig
	sandboxes  map[string]*sandbox
	containers map[string]*container
	images     map[string]*image // by reference
}

// A compile-time check that every role interface of the contract is met.
var _ runtimev1.Plugin = (*Runtime)(nil)

func newRuntime() *Runtime {
	return &Runtime{
		// JSON on stderr: the host re-emits each line in its own log.
		log:        slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("plugin", pluginName),
		sandboxes:  map[string]*sandbox{},
		containers: map[string]*container{},
		images:     map[string]*image{},
	}
}

// pluginName is Info.name: what a RuntimeClass's spec.plugin names.
const pluginName = "example"

// config is the plugin's configuration: the JSON SetConfig carries, which
// configSchema describes. Every field is optional.
type config struct {
	// RootDir holds images and container root filesystems. Default: the
	// state directory the host hands over. Its images/ and containers/
	// are emptied when the plugin starts (nothing in them outlives it).
	RootDir string `json:"rootDir,omitempty"`
}

const configSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "paddock-example-runtime configuration",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "rootDir": {
      "description": "Where images and container root filesystems are kept (its images/ and containers/ are emptied at start). Default: the plugin's state directory.",
      "type": "string", "pattern": "^/"
    }
  }
}`

// parseConfig decodes raw (empty means every default) strictly. Go's
// json matches field names regardless of case and DisallowUnknownFields
// does not change that, so the keys are checked exactly first: a typo
// such as "rootdir" is refused by name instead of silently accepted.
func parseConfig(raw []byte) (config, error) {
	var cfg config
	if len(bytes.TrimSpace(raw)) == 0 {
		return cfg, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return cfg, invalid("config", "want a JSON object: "+strings.TrimPrefix(err.Error(), "json: "))
	}
	for name := range fields {
		if name != "rootDir" {
			return cfg, invalid(name, "unknown field (the configuration has only rootDir)")
		}
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return cfg, invalid("config", strings.TrimPrefix(err.Error(), "json: "))
	}
	return cfg, nil
}

// Info names the plugin and the protocol versions it speaks.
func (r *Runtime) Info(context.Context, *runtimev1.InfoRequest) (*runtimev1.InfoResponse, error) {
	return &runtimev1.InfoResponse{Name: pluginName, Version: "0.1.0", ApiVersions: []string{runtimev1.APIVersion}, ConfigSchema: configSchema}, nil
}

// Capabilities tells the truth about what this plugin leaves out: the
// conformance suite skips the cases of a capability that is false, and
// the control plane never asks for it.
func (r *Runtime) Capabilities(context.Context, *runtimev1.CapabilitiesRequest) (*runtimev1.CapabilitiesResponse, error) {
	return &runtimev1.CapabilitiesResponse{
		IsolationClass:         runtimev1.IsolationClass_ISOLATION_CLASS_NAMESPACE,
		Exec:                   false, // ExecSync and Exec answer NotImplemented
		Signals:                true,
		ReadOnlyRootfs:         false,
		UpdateResources:        false,
		ContainersTiedToPlugin: true, // children get SIGKILL when the plugin dies
		Handlers:               []string{"default"},
	}, nil
}

// SetConfig validates the configuration strictly (an unknown field is
// InvalidArgument naming it) and leaves the plugin as it was on any error.
// The first successful call fixes the root directory; later calls (the
// host calls again when it reattaches) must name the same one.
func (r *Runtime) SetConfig(_ context.Context, req *runtimev1.SetConfigRequest) (*runtimev1.SetConfigResponse, error) {
	if req.ApiVersion != "" && req.ApiVersion != runtimev1.APIVersion {
		return nil, invalid("api_version", fmt.Sprintf("%q is not spoken by this plugin (it speaks %s)", req.ApiVersion, runtimev1.APIVersion))
	}
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return nil, err
	}
	root, field := cfg.RootDir, "rootDir"
	if root == "" {
		root, field = req.StateDir, "state_dir"
	}
	if !filepath.IsAbs(root) || filepath.Clean(root) == "/" {
		return nil, invalid(field, fmt.Sprintf("%q: want an absolute path other than /, for the plugin's own use", root))
	}
	root = filepath.Clean(root)

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.root != "" {
		if r.root != root {
			return nil, errdefs.Field(errdefs.ErrFailedPrecondition, field, fmt.Sprintf("the plugin already keeps its files in %s; restart it to use %s", r.root, root))
		}
		return &runtimev1.SetConfigResponse{}, nil
	}
	// Whatever an earlier process left here belongs to containers that
	// died with it.
	for _, dir := range []string{"images", "containers"} {
		if err := os.RemoveAll(filepath.Join(root, dir)); err != nil {
			return nil, fmt.Errorf("clean %s: %w", dir, err)
		}
		if err := os.MkdirAll(filepath.Join(root, dir), 0o700); err != nil {
			return nil, errdefs.Field(errdefs.ErrInvalidArgument, field, err.Error())
		}
	}
	r.root = root
	r.log.Info("configured", "root", root)
	return &runtimev1.SetConfigResponse{}, nil
}

// configured returns the root directory, or FailedPrecondition before
// SetConfig.
func (r *Runtime) configured() (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.root == "" {
		return "", errdefs.New(errdefs.ErrFailedPrecondition, "the plugin is not configured: call SetConfig first")
	}
	return r.root, nil
}

// Health sends an event at once and then every 20 seconds (the contract
// wants one at least every 30), until the host hangs up. Each event has
// the two conditions every runtime reports.
func (r *Runtime) Health(_ *runtimev1.HealthRequest, s grpc.ServerStreamingServer[runtimev1.HealthEvent]) error {
	tick := time.NewTicker(20 * time.Second)
	defer tick.Stop()
	for {
		if err := s.Send(r.health()); err != nil {
			return err
		}
		select {
		case <-s.Context().Done():
			return nil
		case <-tick.C:
		}
	}
}

// health checks that the directories the plugin writes to take a file.
func (r *Runtime) health() *runtimev1.HealthEvent {
	r.mu.Lock()
	root := r.root
	r.mu.Unlock()
	ev := &runtimev1.HealthEvent{Healthy: true, Timestamp: time.Now().UnixNano(), Description: "ready"}
	for _, cond := range []struct{ typ, dir string }{{"RuntimeReady", "containers"}, {"ImagesReady", "images"}} {
		c := &runtimev1.RuntimeCondition{Type: cond.typ, Status: true, Message: "not configured yet"}
		if root != "" {
			c.Message = filepath.Join(root, cond.dir) + " is writable"
			if f, err := os.CreateTemp(filepath.Join(root, cond.dir), ".health-"); err != nil {
				c.Status, c.Reason, c.Message = false, "NotWritable", err.Error()
				ev.Healthy, ev.Description = false, err.Error()
			} else {
				f.Close()
				os.Remove(f.Name())
			}
		}
		ev.Conditions = append(ev.Conditions, c)
	}
	return ev
}

// The features this example leaves out answer NotImplemented, which the
// host maps back to errdefs.ErrNotImplemented.

func (r *Runtime) ExecSync(context.Context, *runtimev1.ExecSyncRequest) (*runtimev1.ExecSyncResponse, error) {
	return nil, notImplemented("exec")
}

func (r *Runtime) Exec(grpc.BidiStreamingServer[runtimev1.ExecInput, runtimev1.ExecOutput]) error {
	return notImplemented("exec")
}

func (r *Runtime) UpdateResources(context.Context, *runtimev1.UpdateResourcesRequest) (*runtimev1.UpdateResourcesResponse, error) {
	return nil, notImplemented("resource limits")
}

func (r *Runtime) Stats(context.Context, *runtimev1.StatsRequest) (*runtimev1.ContainerStats, error) {
	return nil, notImplemented("stats (they come from cgroups)")
}

func (r *Runtime) PullImage(*runtimev1.PullImageRequest, grpc.ServerStreamingServer[runtimev1.PullProgress]) error {
	return notImplemented("pulling from registries (import an archive with ImportImage)")
}

// Errors. Every error a method returns is of an errdefs class: the plugin's
// gRPC server (set up by runtimev1.Serve) turns the class into a status
// code, and the host turns the code back into the same class. Messages
// name the object or field and say what would be right.

func notImplemented(what string) error {
	return errdefs.New(errdefs.ErrNotImplemented, "the example runtime does not implement "+what)
}

func invalid(field, msg string) error { return errdefs.Field(errdefs.ErrInvalidArgument, field, msg) }

func notFound(kind, id string) error {
	return errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("%s %q not found", kind, id))
}

// matchLabels reports whether labels has every pair of want (List filters).
func matchLabels(labels, want map[string]string) bool {
	for k, v := range want {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
