package containerd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// Config is the plugin's configuration, the JSON that SetConfig receives.
// Address is required; every other field has a default.
type Config struct {
	// Address is the containerd daemon's gRPC socket (a path, or
	// unix:///path).
	Address string `json:"address"`
	// NamespacePrefix is prepended to a tenant's name to make the
	// containerd namespace its containers live in. Default "paddock-".
	NamespacePrefix string `json:"namespacePrefix,omitempty"`
	// ImageNamespace is the containerd namespace that the Images service
	// keeps pulled and imported images in; containers get a copy in their
	// tenant's namespace. It must not start with NamespacePrefix. Default
	// NamespacePrefix without its trailing separator ("paddock").
	ImageNamespace string `json:"imageNamespace,omitempty"`
	// Snapshotter is the containerd snapshotter root filesystems come
	// from. Default "overlayfs".
	Snapshotter string `json:"snapshotter,omitempty"`
	// Runtimes maps a RuntimeClass handler to a containerd runtime type.
	// Default: "runc" → io.containerd.runc.v2, and "runsc" →
	// io.containerd.runsc.v1 when containerd-shim-runsc-v1 is in PATH and
	// runsc is found (see RunscPath).
	Runtimes map[string]string `json:"runtimes,omitempty"`
	// DefaultHandler is the handler of a sandbox that names none, and
	// the one whose isolation class Capabilities answers first. Default
	// "runc".
	DefaultHandler string `json:"defaultHandler,omitempty"`
	// RunscPath is the runsc binary containerd-shim-runsc-v1 runs for the
	// handlers that map to io.containerd.runsc.v1: an absolute path or a
	// name looked up in PATH. Default: runsc next to the shim found in
	// PATH, else next to the plugin's binary, else in PATH.
	RunscPath string `json:"runscPath,omitempty"`
	// RunscPlatform is gVisor's platform: systrap (the default) or
	// ptrace.
	RunscPlatform string `json:"runscPlatform,omitempty"`
	// AllowedMountRoots are the host directories container mounts may come
	// from, after symbolic links are resolved. Default: the state
	// directory's volumes/.
	AllowedMountRoots []string `json:"allowedMountRoots,omitempty"`
	// InsecureRegistries are registry hosts (host or host:port) that may be
	// pulled from over plain HTTP.
	InsecureRegistries []string `json:"insecureRegistries,omitempty"`
	// LogMaxBytes is the size at which a container's log file is rotated
	// (one rotated file is kept); a container's own log_max_bytes wins.
	// Default 10 MiB.
	LogMaxBytes int64 `json:"logMaxBytes,omitempty"`
}

// Defaults.
const (
	DefaultNamespacePrefix = "paddock-"
	DefaultSnapshotter     = "overlayfs"
	DefaultLogMaxBytes     = 10 << 20
	minLogMaxBytes         = 64 << 10
	runcRuntime            = "io.containerd.runc.v2"
	runscRuntime           = "io.containerd.runsc.v1"
	runscShim              = "containerd-shim-runsc-v1"
	runscBinary            = "runsc"
	defaultHandler         = "runc"
	defaultRunscPlatform   = "systrap"
)

// namespaceRE is containerd's rule for namespace names.
var namespaceRE = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)

// configSchema is the JSON Schema of Config, answered by Info.
const configSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "paddock-runtime-containerd configuration",
  "type": "object",
  "additionalProperties": false,
  "required": ["address"],
  "properties": {
    "address": {
      "description": "The containerd daemon's gRPC socket: a path or unix:///path.",
      "type": "string"
    },
    "namespacePrefix": {
      "description": "Prefix of the containerd namespace of each tenant (PREFIX + tenant). Default paddock-.",
      "type": "string"
    },
    "imageNamespace": {
      "description": "containerd namespace of the image service's images. Default: namespacePrefix without its trailing separator.",
      "type": "string"
    },
    "snapshotter": {
      "description": "containerd snapshotter for root filesystems. Default overlayfs.",
      "type": "string"
    },
    "runtimes": {
      "description": "RuntimeClass handler to containerd runtime type. Default runc: io.containerd.runc.v2 (and runsc: io.containerd.runsc.v1 when its shim and runsc are installed).",
      "type": "object", "additionalProperties": {"type": "string"}
    },
    "defaultHandler": {
      "description": "Handler of a sandbox that names none. Default runc.",
      "type": "string"
    },
    "runscPath": {
      "description": "runsc binary the gVisor shim runs: an absolute path or a name in PATH. Default: runsc next to containerd-shim-runsc-v1, else next to the plugin, else in PATH.",
      "type": "string"
    },
    "runscPlatform": {
      "description": "gVisor's platform. Default systrap.",
      "enum": ["systrap", "ptrace"]
    },
    "allowedMountRoots": {
      "description": "Host directories container mounts may come from (after resolving symbolic links). Default: STATE_DIR/volumes only.",
      "type": "array", "items": {"type": "string", "pattern": "^/"}
    },
    "insecureRegistries": {
      "description": "Registry hosts (host or host:port) that may be reached over plain HTTP.",
      "type": "array", "items": {"type": "string"}
    },
    "logMaxBytes": {
      "description": "Size at which a container log is rotated; one rotated file is kept. Default 10485760.",
      "type": "integer", "minimum": 65536
    }
  }
}`

// parseConfig decodes and validates raw, rejecting unknown fields, and
// fills in the defaults for stateDir. Errors are ErrInvalidArgument and
// name the field.
func parseConfig(raw []byte, stateDir string) (*Config, error) {
	cfg := &Config{}
	if len(bytes.TrimSpace(raw)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(cfg); err != nil {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "config: "+err.Error())
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "config: trailing data after the JSON object")
		}
	}
	addr := strings.TrimPrefix(cfg.Address, "unix://")
	if addr == "" {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "address", "the containerd socket is required (for example /run/containerd/containerd.sock)")
	}
	if !filepath.IsAbs(addr) {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "address", fmt.Sprintf("%q is not an absolute socket path", cfg.Address))
	}
	cfg.Address = addr
	if cfg.NamespacePrefix == "" {
		cfg.NamespacePrefix = DefaultNamespacePrefix
	}
	// The prefix followed by a tenant name must be a namespace name.
	if !namespaceRE.MatchString(cfg.NamespacePrefix+"x") || strings.ContainsAny(cfg.NamespacePrefix, " /") {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "namespacePrefix", fmt.Sprintf("%q does not make containerd namespace names (letters, digits and single . _ - between them)", cfg.NamespacePrefix))
	}
	if cfg.ImageNamespace == "" {
		cfg.ImageNamespace = strings.TrimRight(cfg.NamespacePrefix, "._-")
	}
	if !namespaceRE.MatchString(cfg.ImageNamespace) {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "imageNamespace", fmt.Sprintf("%q is not a containerd namespace name", cfg.ImageNamespace))
	}
	if strings.HasPrefix(cfg.ImageNamespace, cfg.NamespacePrefix) {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "imageNamespace", fmt.Sprintf("%q starts with namespacePrefix %q and could be a tenant's namespace", cfg.ImageNamespace, cfg.NamespacePrefix))
	}
	if cfg.Snapshotter == "" {
		cfg.Snapshotter = DefaultSnapshotter
	}
	if err := cfg.resolveRuntimes(); err != nil {
		return nil, err
	}
	for i, r := range cfg.AllowedMountRoots {
		if !filepath.IsAbs(r) || filepath.Clean(r) == "/" {
			return nil, errdefs.Field(errdefs.ErrInvalidArgument, fmt.Sprintf("allowedMountRoots[%d]", i), fmt.Sprintf("%q must be an absolute path other than /", r))
		}
	}
	if len(cfg.AllowedMountRoots) == 0 {
		cfg.AllowedMountRoots = []string{filepath.Join(stateDir, "volumes")}
	}
	if cfg.LogMaxBytes == 0 {
		cfg.LogMaxBytes = DefaultLogMaxBytes
	}
	if cfg.LogMaxBytes < minLogMaxBytes {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "logMaxBytes", fmt.Sprintf("%d is below the minimum %d", cfg.LogMaxBytes, minLogMaxBytes))
	}
	return cfg, nil
}

// resolveRuntimes fills in and checks Runtimes, DefaultHandler and, when
// a handler runs gVisor, RunscPath and RunscPlatform.
func (cfg *Config) resolveRuntimes() error {
	explicit := cfg.Runtimes != nil
	if explicit {
		cfg.Runtimes = maps.Clone(cfg.Runtimes)
	} else {
		cfg.Runtimes = map[string]string{"runc": runcRuntime}
	}
	for _, h := range slices.Sorted(maps.Keys(cfg.Runtimes)) {
		if h == "" || strings.Count(cfg.Runtimes[h], ".") < 2 {
			return errdefs.Field(errdefs.ErrInvalidArgument, "runtimes", fmt.Sprintf("handler %q → %q: want a handler name and a containerd runtime type like io.containerd.runc.v2", h, cfg.Runtimes[h]))
		}
	}
	if cfg.RunscPlatform == "" {
		cfg.RunscPlatform = defaultRunscPlatform
	}
	if cfg.RunscPlatform != "systrap" && cfg.RunscPlatform != "ptrace" {
		return errdefs.Field(errdefs.ErrInvalidArgument, "runscPlatform", fmt.Sprintf("%q is not a gVisor platform: want systrap or ptrace", cfg.RunscPlatform))
	}
	runsc, err := findRunsc(cfg.RunscPath)
	needed := slices.Contains(slices.Collect(maps.Values(cfg.Runtimes)), runscRuntime)
	if err != nil && (needed || cfg.RunscPath != "") {
		return errdefs.Field(errdefs.ErrInvalidArgument, "runscPath", err.Error())
	}
	if _, shimErr := exec.LookPath(runscShim); !explicit && shimErr == nil && err == nil {
		// Offered by default when both the shim and runsc are here.
		cfg.Runtimes["runsc"] = runscRuntime
	}
	cfg.RunscPath = runsc
	if cfg.DefaultHandler == "" {
		cfg.DefaultHandler = defaultHandler
	}
	if _, ok := cfg.Runtimes[cfg.DefaultHandler]; !ok {
		return errdefs.Field(errdefs.ErrInvalidArgument, "defaultHandler", fmt.Sprintf("handler %q is not configured; this plugin offers %v", cfg.DefaultHandler, slices.Sorted(maps.Keys(cfg.Runtimes))))
	}
	return nil
}

// findRunsc resolves the runsc binary: name (a path, or a name looked up
// in PATH) when set, else runsc next to containerd-shim-runsc-v1 in PATH,
// next to this process's binary, or in PATH.
func findRunsc(name string) (string, error) {
	if name != "" {
		p, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("runsc %q: %v", name, err)
		}
		return filepath.Abs(p)
	}
	var dirs []string
	if shim, err := exec.LookPath(runscShim); err == nil {
		dirs = append(dirs, filepath.Dir(shim))
	}
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Dir(exe))
	}
	for _, dir := range dirs {
		p := filepath.Join(dir, runscBinary)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return filepath.Abs(p)
		}
	}
	p, err := exec.LookPath(runscBinary)
	if err != nil {
		return "", fmt.Errorf("runsc is neither next to %s, nor next to the plugin, nor in PATH; set runscPath", runscShim)
	}
	return filepath.Abs(p)
}

// isolation is the isolation class of a containerd runtime type.
func isolation(runtime string) runtimev1.IsolationClass {
	if runtime == runscRuntime {
		return runtimev1.IsolationClass_ISOLATION_CLASS_USERSPACE_KERNEL
	}
	return runtimev1.IsolationClass_ISOLATION_CLASS_NAMESPACE
}

// runtimeFor returns the containerd runtime type of a handler ("" is
// DefaultHandler).
func (cfg *Config) runtimeFor(handler string) (string, error) {
	if handler == "" {
		handler = cfg.DefaultHandler
	}
	rt, ok := cfg.Runtimes[handler]
	if !ok {
		return "", errdefs.Field(errdefs.ErrInvalidArgument, "config.handler", fmt.Sprintf("handler %q is not configured; this plugin offers %v", handler, slices.Sorted(maps.Keys(cfg.Runtimes))))
	}
	return rt, nil
}

// namespace returns the containerd namespace of a tenant's containers.
func (cfg *Config) namespace(tenant string) string {
	if tenant == "" {
		tenant = "default"
	}
	return cfg.NamespacePrefix + tenant
}
