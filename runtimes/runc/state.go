package runc

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"

	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// File names inside a container's directory.
const (
	containerFile = "container.json" // containerRecord, written by the plugin
	shimConfFile  = "shim-config.json"
	shimFile      = "shim.json" // shimState, written by the shim once the container runs
	shimPidFile   = "shim.pid"  // "PID START" of the shim, written by the plugin when it launched it
	exitFile      = "exit.json" // exitRecord, written by the shim (or the plugin for a start error)
	logFile       = "container.log"
	shimLogFile   = "shim.log"
	runcLogFile   = "runc.log"
	bundleDir     = "bundle"
)

// recordVersion is the version of the on-disk records; a record of another
// version is refused rather than misread.
const recordVersion = 1

// writeFileAtomic writes data to path so that readers see the old or the
// new content, never a part: a temporary file in the same directory,
// synced and renamed over path.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// writeJSON writes v as JSON to path atomically.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(data, '\n'), 0o600)
}

// readJSON reads path into v. A missing file is fs.ErrNotExist.
func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

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

// shimState is containers/ID/shim.json: written by the shim once the
// container is running.
type shimState struct {
	ShimPid   int    `json:"shimPid"`
	ShimStart uint64 `json:"shimStart"` // /proc/PID/stat start time, against pid reuse
	InitPid   int    `json:"initPid"`
	InitStart uint64 `json:"initStart"`
	StartedAt int64  `json:"startedAt"`
}

// exitRecord is containers/ID/exit.json.
type exitRecord struct {
	ExitCode   int32  `json:"exitCode"`
	Signal     int32  `json:"signal,omitempty"`
	OOMKilled  bool   `json:"oomKilled,omitempty"`
	FinishedAt int64  `json:"finishedAt"`
	Reason     string `json:"reason"`
	Message    string `json:"message,omitempty"`
}

func (e *exitRecord) proto() *runtimev1.ExitStatus {
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

func makeHandle(sandboxID string) []byte {
	b, _ := json.Marshal(handle{Version: handleVersion, Plugin: pluginName, SandboxID: sandboxID})
	return b
}

// parseHandle decodes a handle: InvalidArgument if it is not one of ours,
// FailedPrecondition if it is of another version.
func parseHandle(b []byte) (string, error) {
	var h handle
	if len(b) == 0 {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "recover: empty handle")
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "recover: the handle is not a runc plugin handle: "+err.Error())
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
