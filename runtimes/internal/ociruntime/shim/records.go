package shim

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// File names inside a container's directory.
const (
	ConfigFile  = "shim-config.json" // Config, written by the plugin
	StateFile   = "shim.json"        // State, written by the shim once the container runs
	ExitFile    = "exit.json"        // Exit, written by the shim (or the plugin for a start error)
	LogFile     = "shim.log"         // the shim's own log
	RuncLogFile = "runc.log"         // runc's JSON log
	initPidFile = "init.pid"         // runc's pid file of the container's init
)

// Config is shim-config.json: everything the shim needs.
type Config struct {
	ID          string `json:"id"`
	Runc        string `json:"runc"`
	RuncRoot    string `json:"runcRoot"`
	Bundle      string `json:"bundle"`
	LogPath     string `json:"logPath"`
	LogMaxBytes int64  `json:"logMaxBytes"`
	OOMFile     string `json:"oomFile"`
	OOMKey      string `json:"oomKey"`
	// RuntimeArgs are the runtime's options after --root (runsc's
	// platform, network, debug log).
	RuntimeArgs []string `json:"runtimeArgs,omitempty"`
	// WaitCommand makes the shim learn the exit from "RUNTIME wait ID"
	// instead of reaping the init: a gVisor container's processes live
	// in its sandbox, not on the host.
	WaitCommand bool `json:"waitCommand,omitempty"`
}

// Ready is the shim's one report to the plugin, a JSON line on fd 3.
type Ready struct {
	Pid       int    `json:"pid,omitempty"`
	StartedAt int64  `json:"startedAt,omitempty"`
	Error     string `json:"error,omitempty"`
}

// State is shim.json: written by the shim once the container runs.
type State struct {
	ShimPid   int    `json:"shimPid"`
	ShimStart uint64 `json:"shimStart"` // /proc/PID/stat start time, against pid reuse
	InitPid   int    `json:"initPid"`
	InitStart uint64 `json:"initStart"`
	StartedAt int64  `json:"startedAt"`
	// InitShared says InitPid is a process the container shares with
	// others (a gVisor sandbox's): it running says nothing about this
	// container, whose shim alone tells.
	InitShared bool `json:"initShared,omitempty"`
}

// Exit is exit.json: how the container ended.
type Exit struct {
	ExitCode   int32  `json:"exitCode"`
	Signal     int32  `json:"signal,omitempty"`
	OOMKilled  bool   `json:"oomKilled,omitempty"`
	FinishedAt int64  `json:"finishedAt"`
	Reason     string `json:"reason"`
	Message    string `json:"message,omitempty"`
}

// Durability says whether WriteFileAtomic also puts a record on disk.
type Durability bool

const (
	// Durable: the new version is synced to disk before it replaces the
	// old one, and the directory after, so that it survives a crash of
	// the machine once the write returned. Costs two fsyncs (~1–3 ms on
	// an ordinary disk).
	Durable Durability = true
	// Buffered: the new version replaces the old one in the page cache
	// only. Every process, including one started after any process
	// crashed, sees the old or the new version; a crash of the machine
	// may lose it (the old version, an empty file or no file is found
	// after the reboot). For records that are rebuilt, or not needed,
	// after a crash of the machine — nothing survives one but the files.
	Buffered Durability = false
)

// WriteFileAtomic writes data to path so that readers see the old or the
// new content, never a part: a temporary file in the same directory,
// renamed over path. With Durable the file is synced before the rename
// and the directory after it.
func WriteFileAtomic(path string, data []byte, perm os.FileMode, d Durability) error {
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
	if d == Durable {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if d == Durable {
		// The new version is in place: a failed directory sync must not
		// read as a failed write, or the caller would undo a change that
		// every reader already sees.
		_ = syncDir(dir)
	}
	return nil
}

// SyncFile puts a file that WriteFileAtomic wrote Buffered on disk, with
// its directory entry: afterwards it survives a crash of the machine like
// a Durable write. Until then a crash may leave an empty file, so it
// suits new files only, not replacements of records that matter.
func SyncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// WriteJSON writes v as indented JSON to path with WriteFileAtomic, mode
// 0600.
func WriteJSON(path string, v any, d Durability) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, append(data, '\n'), 0o600, d)
}

// ReadJSON reads path into v. A missing file is fs.ErrNotExist.
func ReadJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}
