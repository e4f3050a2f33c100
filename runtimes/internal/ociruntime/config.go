package ociruntime

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/paddock-dev/paddock/core/errdefs"
)

// Config is the plugin's configuration, the JSON that SetConfig receives.
// The zero value is valid and means every default.
type Config struct {
	// AllowedMountRoots are the host directories that container mounts
	// may come from, after symbolic links are resolved. Default: the state
	// directory's volumes/ only.
	AllowedMountRoots []string `json:"allowedMountRoots,omitempty"`
	// RuncPath is the runc binary: an absolute path or a name looked up
	// in PATH. Default "runc".
	RuncPath string `json:"runcPath,omitempty"`
	// ImageStoreRoot is where the image store keeps its content. Default:
	// the state directory's images/.
	ImageStoreRoot string `json:"imageStoreRoot,omitempty"`
	// InsecureRegistries are registry hosts (host or host:port) that may be
	// pulled from over plain HTTP.
	InsecureRegistries []string `json:"insecureRegistries,omitempty"`
	// LogMaxBytes is the size at which a container's log file is rotated
	// (one rotated file is kept); a container's own log_max_bytes wins.
	// Default 10 MiB.
	LogMaxBytes int64 `json:"logMaxBytes,omitempty"`
	// RunscPath is the runsc binary (the Runsc flavor only): an absolute
	// path or a name looked up in PATH. Default: runsc next to the
	// plugin's binary, else in PATH.
	RunscPath string `json:"runscPath,omitempty"`
	// Platform is gVisor's platform (Runsc only): "systrap" (default) or
	// "ptrace".
	Platform string `json:"platform,omitempty"`
	// RootDir is runsc's own state directory, its --root (Runsc only).
	// Default: the state directory's runsc/.
	RootDir string `json:"rootDir,omitempty"`
	// DebugLogDir, when set, receives runsc's debug logs, one file per
	// runsc command and sandbox process (Runsc only).
	DebugLogDir string `json:"debugLogDir,omitempty"`
	// ShimPath is the container shim binary (cmd/paddock-runc-shim), an
	// absolute path. Default: paddock-runc-shim in the directory of the
	// plugin's binary or, when it is not there, the plugin's binary
	// itself (slower to start; the plugin logs a warning).
	ShimPath string `json:"shimPath,omitempty"`
}

// DefaultLogMaxBytes is the default rotation threshold of container logs.
const DefaultLogMaxBytes = 10 << 20

// minLogMaxBytes is the smallest rotation threshold accepted: a log file
// holds at least a few full-size CRI lines.
const minLogMaxBytes = 64 << 10

// configSchema is the JSON Schema of the runc flavor's Config, answered
// by Info.
const configSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "paddock-runtime-runc configuration",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "runcPath": {
      "description": "The runc binary: an absolute path or a name looked up in PATH. Default runc.",
      "type": "string"
    },` + sharedSchemaProperties + `
  }
}`

// sharedSchemaProperties are the schema's properties both flavors have.
const sharedSchemaProperties = `
    "allowedMountRoots": {
      "description": "Host directories container mounts may come from (after resolving symbolic links). Default: STATE_DIR/volumes only.",
      "type": "array", "items": {"type": "string", "pattern": "^/"}
    },
    "imageStoreRoot": {
      "description": "Where the image store keeps its content. Default: STATE_DIR/images.",
      "type": "string", "pattern": "^/"
    },
    "insecureRegistries": {
      "description": "Registry hosts (host or host:port) that may be reached over plain HTTP.",
      "type": "array", "items": {"type": "string"}
    },
    "logMaxBytes": {
      "description": "Size at which a container log is rotated; one rotated file is kept. Default 10485760.",
      "type": "integer", "minimum": 65536
    },
    "shimPath": {
      "description": "The container shim binary (paddock-runc-shim), an absolute path. Default: paddock-runc-shim next to the plugin's binary, else the plugin's binary itself.",
      "type": "string", "pattern": "^/"
    }`

// parseConfig decodes and validates raw (empty means all defaults),
// rejecting unknown fields. Errors are ErrInvalidArgument.
func parseConfig(flavor Flavor, raw []byte) (*Config, error) {
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
	for i, r := range cfg.AllowedMountRoots {
		if !filepath.IsAbs(r) {
			return nil, errdefs.Field(errdefs.ErrInvalidArgument, fmt.Sprintf("allowedMountRoots[%d]", i), fmt.Sprintf("%q is not an absolute path", r))
		}
		if filepath.Clean(r) == "/" {
			return nil, errdefs.Field(errdefs.ErrInvalidArgument, fmt.Sprintf("allowedMountRoots[%d]", i), "the host root / may not be an allowed mount root")
		}
	}
	if cfg.ImageStoreRoot != "" && !filepath.IsAbs(cfg.ImageStoreRoot) {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "imageStoreRoot", fmt.Sprintf("%q is not an absolute path", cfg.ImageStoreRoot))
	}
	if cfg.LogMaxBytes != 0 && cfg.LogMaxBytes < minLogMaxBytes {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "logMaxBytes", fmt.Sprintf("%d is below the minimum %d", cfg.LogMaxBytes, minLogMaxBytes))
	}
	if cfg.ShimPath != "" && !filepath.IsAbs(cfg.ShimPath) {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "shimPath", fmt.Sprintf("%q is not an absolute path", cfg.ShimPath))
	}
	if err := checkBinaryName("runcPath", cfg.RuncPath); err != nil {
		return nil, err
	}
	if err := checkBinaryName("runscPath", cfg.RunscPath); err != nil {
		return nil, err
	}
	if err := checkFlavorFields(flavor, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// withDefaults returns cfg with defaults filled in for stateDir.
func (cfg Config) withDefaults(flavor Flavor, stateDir string) Config {
	switch {
	case flavor == Runsc && cfg.RunscPath == "":
		cfg.RunscPath = flavor.defaultBinary()
	case flavor == Runc && cfg.RuncPath == "":
		cfg.RuncPath = flavor.defaultBinary()
	}
	if flavor == Runsc && cfg.Platform == "" {
		cfg.Platform = "systrap"
	}
	if len(cfg.AllowedMountRoots) == 0 {
		cfg.AllowedMountRoots = []string{filepath.Join(stateDir, "volumes")}
	}
	if cfg.ImageStoreRoot == "" {
		cfg.ImageStoreRoot = filepath.Join(stateDir, "images")
	}
	if cfg.LogMaxBytes == 0 {
		cfg.LogMaxBytes = DefaultLogMaxBytes
	}
	return cfg
}

// resolveRunc returns the absolute path of the runc binary cfg names.
func resolveRunc(name string) (string, error) {
	if filepath.IsAbs(name) {
		fi, err := os.Stat(name)
		if err != nil {
			return "", err
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return "", fmt.Errorf("%s is not an executable file", name)
		}
		return name, nil
	}
	return exec.LookPath(name)
}

// checkBinaryName checks that a binary setting is an absolute path or a
// bare name to look up in PATH.
func checkBinaryName(field, name string) error {
	if name != "" && !filepath.IsAbs(name) && filepath.Base(name) != name {
		return errdefs.Field(errdefs.ErrInvalidArgument, field, fmt.Sprintf("%q must be an absolute path or a bare name looked up in PATH", name))
	}
	return nil
}

// checkFlavorFields refuses the settings of the other flavor and checks
// runsc's own.
func checkFlavorFields(flavor Flavor, cfg *Config) error {
	foreign := map[string]bool{"runscPath": cfg.RunscPath != "", "platform": cfg.Platform != "", "rootDir": cfg.RootDir != "", "debugLogDir": cfg.DebugLogDir != ""}
	if flavor == Runsc {
		foreign = map[string]bool{"runcPath": cfg.RuncPath != ""}
	}
	for _, field := range sortedKeys(foreign) {
		if foreign[field] {
			return errdefs.Field(errdefs.ErrInvalidArgument, field, fmt.Sprintf("%s is not a setting of the %s plugin", field, flavor.name()))
		}
	}
	if flavor != Runsc {
		return nil
	}
	switch cfg.Platform {
	case "", "systrap", "ptrace":
	default:
		return errdefs.Field(errdefs.ErrInvalidArgument, "platform", fmt.Sprintf("%q is not a gVisor platform: use systrap or ptrace", cfg.Platform))
	}
	for field, dir := range map[string]string{"rootDir": cfg.RootDir, "debugLogDir": cfg.DebugLogDir} {
		if dir != "" && !filepath.IsAbs(dir) {
			return errdefs.Field(errdefs.ErrInvalidArgument, field, fmt.Sprintf("%q is not an absolute path", dir))
		}
	}
	return nil
}
