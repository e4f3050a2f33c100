package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// restoredPeerURL is the peer URL recorded for the member that
// RestoreSnapshot creates. An embedded member never dials it: it has no
// peers, and StartEmbedded listens on a port of its own choosing.
const restoredPeerURL = "http://127.0.0.1:2380"

// SaveSnapshot streams a point-in-time snapshot of the database of the
// member cli talks to (etcd's Maintenance.Snapshot) to w and returns the
// number of bytes written. The stream ends with etcd's SHA-256 checksum, so
// the result is a file that RestoreSnapshot and etcdutl accept. cli must
// reach exactly one member: the snapshot is of that member's state.
func SaveSnapshot(ctx context.Context, cli *clientv3.Client, w io.Writer) (int64, error) {
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		return 0, fmt.Errorf("save etcd snapshot: %w", err)
	}
	defer rc.Close()
	n, err := io.Copy(w, rc)
	if err != nil {
		return n, fmt.Errorf("save etcd snapshot after %d bytes: %w", n, err)
	}
	if n == 0 {
		return 0, errors.New("save etcd snapshot: the server sent an empty snapshot")
	}
	return n, nil
}

// RestoreSnapshot turns a snapshot file written by SaveSnapshot (or
// etcdctl snapshot save) into the etcd member directory of dataDir, so that
// StartEmbedded with EmbeddedConfig{Dir: dataDir, Name: name} starts on the
// restored data as a new single-member cluster. name defaults to "paddock".
//
// It refuses to overwrite: if dataDir already holds a member directory with
// data, or a member is running on dataDir, it fails and says so. The
// snapshot's checksum is verified; a damaged or truncated file is an error.
// logger receives etcd's warnings as in EmbeddedConfig.Logger; nil discards
// them.
func RestoreSnapshot(snapshotFile, dataDir, name string, logger *slog.Logger) (err error) {
	if dataDir == "" {
		return errors.New("restore etcd snapshot: data directory is empty: name the directory to restore into")
	}
	if name == "" {
		name = DefaultMemberName
	}
	if fi, err := os.Stat(snapshotFile); err != nil {
		return fmt.Errorf("restore etcd snapshot: %w", err)
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("restore etcd snapshot: %s is not a regular file", snapshotFile)
	}

	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("restore etcd snapshot: create data directory: %w", err)
	}
	lock, err := lockDataDir(dataDir)
	if err != nil {
		return fmt.Errorf("restore etcd snapshot: %w", err)
	}
	defer lock.Close()

	memberDir := filepath.Join(dataDir, "member")
	marker := filepath.Join(dataDir, embeddedBootstrapMarker)
	if _, err := os.Stat(marker); err == nil {
		// The member directory is what an interrupted first start left:
		// it holds no data. Clear it, and the marker, which would make
		// StartEmbedded discard the restored member.
		if err := os.RemoveAll(memberDir); err != nil {
			return fmt.Errorf("restore etcd snapshot: %w", err)
		}
		if err := removeSynced(marker); err != nil {
			return fmt.Errorf("restore etcd snapshot: %w", err)
		}
	}
	switch empty, err := dirEmpty(memberDir); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("restore etcd snapshot: %w", err)
	case !empty:
		return fmt.Errorf("restore etcd snapshot: %s already holds etcd data: move it away (stop the server first if it is running) and try again", memberDir)
	default:
		if err := os.Remove(memberDir); err != nil {
			return fmt.Errorf("restore etcd snapshot: %w", err)
		}
	}

	// etcdutl wants a data directory of its own that is empty; dataDir may
	// hold other files (the lock, at least). Restore next to the target and
	// move the member directory into place in one rename.
	tmp, err := os.MkdirTemp(dataDir, ".restore-")
	if err != nil {
		return fmt.Errorf("restore etcd snapshot: %w", err)
	}
	defer os.RemoveAll(tmp)

	// etcd's storage code reports a database it cannot open by panicking
	// (or exiting, on Fatal). Turn both into errors: a bad file must not
	// take the process down.
	zl := newZapLogger(logger, nil).WithOptions(zap.WithFatalHook(zapcore.WriteThenPanic))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("restore etcd snapshot from %s: the snapshot cannot be read: %v", snapshotFile, r)
		}
	}()
	err = snapshot.NewV3(zl).Restore(snapshot.RestoreConfig{
		SnapshotPath:        snapshotFile,
		Name:                name,
		OutputDataDir:       tmp,
		PeerURLs:            []string{restoredPeerURL},
		InitialCluster:      name + "=" + restoredPeerURL,
		InitialClusterToken: embeddedClusterToken,
	})
	if err != nil {
		return fmt.Errorf("restore etcd snapshot from %s (is it a complete snapshot file?): %w", snapshotFile, err)
	}
	if err := os.Rename(filepath.Join(tmp, "member"), memberDir); err != nil {
		return fmt.Errorf("restore etcd snapshot: %w", err)
	}
	if err := syncDir(dataDir); err != nil {
		return fmt.Errorf("restore etcd snapshot: %w", err)
	}
	return nil
}

// dirEmpty reports whether dir has no entries. It returns an error wrapping
// fs.ErrNotExist if dir does not exist.
func dirEmpty(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}
