package ociruntime

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"regexp"

	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/internal/ociruntime/shim"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// File names inside a container's directory, besides the shim's
// (runtimes/internal/ociruntime/shim: shim-config.json, shim.json, exit.json, shim.log,
// runc.log).
const (
	containerFile = "container.json" // containerRecord, written by the plugin
	shimPidFile   = "shim.pid"       // "PID START" of the shim, written by the plugin when it launched it
	logFile       = "container.log"
	bundleDir     = "bundle"
)

// recordVersion is the version of the on-disk records; a record of another
// version is refused rather than misread.
const recordVersion = 1

// newID returns a random identifier for a sandbox or container.
func newID() string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}

// validID matches the identifiers newID makes; anything else given as an
// id cannot name an object (and never reaches a path).
var validID = regexp.MustCompile(`^[0-9a-f]{24}$`)

// protoJSON wraps a proto message so that records marshal it with
// protojson, the proto's own JSON mapping.
type protoJSON[T any, P interface {
	*T
	proto.Message
}] struct{ Msg P }

func (p protoJSON[T, P]) MarshalJSON() ([]byte, error) {
	if p.Msg == nil {
		return []byte("null"), nil
	}
	return protojson.Marshal(p.Msg)
}

func (p *protoJSON[T, P]) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		p.Msg = nil
		return nil
	}
	p.Msg = P(new(T))
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, p.Msg)
}

// sandboxRecord is sandboxes/ID/sandbox.json.
type sandboxRecord struct {
	Version   int                                                          `json:"version"`
	ID        string                                                       `json:"id"`
	Config    protoJSON[runtimev1.SandboxConfig, *runtimev1.SandboxConfig] `json:"config"`
	Ready     bool                                                         `json:"ready"`
	CreatedAt int64                                                        `json:"createdAt"`
	// NetnsPath is the network namespace the containers join: the
	// config's, or the sandbox's own (OwnNetns).
	NetnsPath string `json:"netnsPath"`
	// OwnNetns says the plugin made NetnsPath and removes it.
	OwnNetns bool `json:"ownNetns,omitempty"`
}

// containerRecord is containers/ID/container.json.
type containerRecord struct {
	Version     int                                                              `json:"version"`
	ID          string                                                           `json:"id"`
	SandboxID   string                                                           `json:"sandboxId"`
	Config      protoJSON[runtimev1.ContainerConfig, *runtimev1.ContainerConfig] `json:"config"`
	CreatedAt   int64                                                            `json:"createdAt"`
	ImageDigest string                                                           `json:"imageDigest,omitempty"`
	// Cgroup is the container's cgroup path (the spec's cgroupsPath).
	Cgroup string `json:"cgroup"`
	// StopSignal is the resolved stop signal number.
	StopSignal int `json:"stopSignal"`
	// LogMaxBytes is the resolved rotation threshold.
	LogMaxBytes int64 `json:"logMaxBytes"`
	// Started is set once StartContainer launched the shim: from then on
	// the shim owns the container's process.
	Started bool `json:"started,omitempty"`
}

// exitStatus returns exit.json's record as the contract's message.
func exitStatus(e *shim.Exit) *runtimev1.ExitStatus {
	if e == nil {
		return nil
	}
	return &runtimev1.ExitStatus{
		ExitCode:   e.ExitCode,
		Signal:     e.Signal,
		OomKilled:  e.OOMKilled,
		FinishedAt: e.FinishedAt,
		Reason:     e.Reason,
		Message:    e.Message,
	}
}

// handle is what Sandbox.handle carries: enough to find the sandbox's
// state again after a restart.
type handle struct {
	Version   int    `json:"version"`
	Plugin    string `json:"plugin"`
	SandboxID string `json:"sandboxId"`
}

// handleVersion is the version of handles this plugin makes and reads.
const handleVersion = 1

func makeHandle(plugin, sandboxID string) []byte {
	b, _ := json.Marshal(handle{Version: handleVersion, Plugin: plugin, SandboxID: sandboxID})
	return b
}

// parseHandle decodes a handle: InvalidArgument if it is not one of ours,
// FailedPrecondition if it is of another version.
func parseHandle(pluginName string, b []byte) (string, error) {
	var h handle
	if len(b) == 0 {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "recover: empty handle")
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "recover: the handle is not a "+pluginName+" plugin handle: "+err.Error())
	}
	if h.Plugin != pluginName {
		return "", errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("recover: the handle belongs to plugin %q, not %q", h.Plugin, pluginName))
	}
	if h.Version != handleVersion {
		return "", errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("recover: handle version %d is not supported (this plugin reads version %d)", h.Version, handleVersion))
	}
	if !validID.MatchString(h.SandboxID) {
		return "", errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("recover: sandbox %q not found", h.SandboxID))
	}
	return h.SandboxID, nil
}

// isNotExist reports whether err says a file does not exist.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
