package containerd

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// newID returns a random identifier for a sandbox or container.
func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validID matches what newID makes; nothing else names an object (or
// reaches a path).
var validID = regexp.MustCompile(`^[0-9a-f]{24}$`)

// recordVersion is the version of sandbox.json; another is refused rather
// than misread.
const recordVersion = 1

// sandboxRecord is sandboxes/ID/sandbox.json: the plugin's own record of a
// pod (containerd 1.6 has no sandbox objects).
type sandboxRecord struct {
	Version   int             `json:"version"`
	ID        string          `json:"id"`
	Config    json.RawMessage `json:"config"` // SandboxConfig, protojson
	Ready     bool            `json:"ready"`
	CreatedAt int64           `json:"createdAt"`
	// Namespace is the containerd namespace of the sandbox's containers
	// and Runtime the containerd runtime type they run with.
	Namespace string `json:"namespace"`
	Runtime   string `json:"runtime"`
	// NetnsPath is the network namespace the containers join: the
	// config's, or the sandbox's own (OwnNetns), which the plugin removes.
	NetnsPath string `json:"netnsPath"`
	OwnNetns  bool   `json:"ownNetns,omitempty"`

	cfg *runtimev1.SandboxConfig // decoded Config
}

func (r *sandboxRecord) config() *runtimev1.SandboxConfig { return r.cfg }

func (r *sandboxRecord) setConfig(c *runtimev1.SandboxConfig) error {
	b, err := protojson.Marshal(c)
	if err != nil {
		return err
	}
	r.Config, r.cfg = b, c
	return nil
}

func readSandboxRecord(dir string) (*sandboxRecord, error) {
	b, err := os.ReadFile(filepath.Join(dir, "sandbox.json"))
	if err != nil {
		return nil, err
	}
	r := &sandboxRecord{}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, err
	}
	if r.Version != recordVersion || r.ID != filepath.Base(dir) {
		return nil, fmt.Errorf("sandbox record %s: version %d id %q do not match", dir, r.Version, r.ID)
	}
	r.cfg = &runtimev1.SandboxConfig{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(r.Config, r.cfg); err != nil {
		return nil, fmt.Errorf("sandbox record %s: %w", dir, err)
	}
	return r, nil
}

func (r *sandboxRecord) write(dir string) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return writeFileSynced(filepath.Join(dir, "sandbox.json"), b, 0o600)
}

// writeFileSynced replaces path with data atomically and durably: a
// temporary file, fsynced, renamed into place, and the directory synced.
func writeFileSynced(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// handle is what Sandbox.handle carries.
type handle struct {
	Version   int    `json:"version"`
	Plugin    string `json:"plugin"`
	SandboxID string `json:"sandboxId"`
}

const handleVersion = 1

func makeHandle(id string) []byte {
	b, _ := json.Marshal(handle{Version: handleVersion, Plugin: pluginName, SandboxID: id})
	return b
}

// parseHandle reads a handle: InvalidArgument when it is not a handle,
// FailedPrecondition when another plugin's or another version's.
func parseHandle(b []byte) (string, error) {
	var h handle
	if len(b) == 0 {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "recover: empty handle")
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "recover: the handle is not a containerd plugin handle: "+err.Error())
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
