package store

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// saveSnapshotFile saves a snapshot of cli's member to a file and returns
// its path.
func saveSnapshotFile(t *testing.T, cli *clientv3.Client) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "snapshot.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := SaveSnapshot(t.Context(), cli, f)
	if err != nil {
		t.Fatalf("SaveSnapshot() = %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != n {
		t.Fatalf("SaveSnapshot() = %d bytes, file has %v (%v)", n, fi.Size(), err)
	}
	return path
}

func etcdKeys(t *testing.T, cli *clientv3.Client, prefix string) []string {
	t.Helper()
	resp, err := cli.Get(t.Context(), prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatalf("Get(%q, prefix) = %v", prefix, err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		out = append(out, string(kv.Key))
	}
	return out
}

func TestSnapshotSaveRestore(t *testing.T) {
	src := startTestMember(t, EmbeddedConfig{Dir: filepath.Join(t.TempDir(), "src")})
	etcdPut(t, src.Client(), "/paddock/tenants/a", "1")
	etcdPut(t, src.Client(), "/paddock/tenants/b", "2")
	snap := saveSnapshotFile(t, src.Client())
	etcdPut(t, src.Client(), "/paddock/tenants/c", "3")

	dst := filepath.Join(t.TempDir(), "dst")
	if err := RestoreSnapshot(snap, dst, "restored", etcdTestLogger(t)); err != nil {
		t.Fatalf("RestoreSnapshot() = %v", err)
	}
	e := startTestMember(t, EmbeddedConfig{Dir: dst, Name: "restored"})
	got := etcdKeys(t, e.Client(), "/paddock/")
	want := []string{"/paddock/tenants/a", "/paddock/tenants/b"}
	if !slices.Equal(got, want) {
		t.Fatalf("keys after restore = %q, want %q", got, want)
	}
	if v, _ := etcdGet(t, e.Client(), "/paddock/tenants/b"); v != "2" {
		t.Errorf("value of b after restore = %q, want %q", v, "2")
	}
	// The restored member takes writes.
	etcdPut(t, e.Client(), "/paddock/tenants/d", "4")
}

func TestRestoreSnapshotRefusesExistingData(t *testing.T) {
	src := startTestMember(t, EmbeddedConfig{Dir: filepath.Join(t.TempDir(), "src")})
	etcdPut(t, src.Client(), "/k", "v")
	snap := saveSnapshotFile(t, src.Client())

	// A member is running on the directory.
	err := RestoreSnapshot(snap, src.etcd.Config().Dir, "", nil)
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("RestoreSnapshot onto a running member = %v, want an \"in use\" error", err)
	}

	// A stopped member's data is in the way.
	dst := filepath.Join(t.TempDir(), "dst")
	if err := RestoreSnapshot(snap, dst, "", nil); err != nil {
		t.Fatalf("first RestoreSnapshot() = %v", err)
	}
	err = RestoreSnapshot(snap, dst, "", nil)
	memberDir := filepath.Join(dst, "member")
	if err == nil || !strings.Contains(err.Error(), memberDir) || !strings.Contains(err.Error(), "move it away") {
		t.Errorf("second RestoreSnapshot() = %v, want an error naming %s and saying to move it away", err, memberDir)
	}
}

func TestRestoreSnapshotOverInterruptedBootstrap(t *testing.T) {
	src := startTestMember(t, EmbeddedConfig{Dir: filepath.Join(t.TempDir(), "src")})
	etcdPut(t, src.Client(), "/k", "v")
	snap := saveSnapshotFile(t, src.Client())

	// What a first start that died early leaves behind.
	dst := filepath.Join(t.TempDir(), "dst")
	if err := os.MkdirAll(filepath.Join(dst, "member", "wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, embeddedBootstrapMarker), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := RestoreSnapshot(snap, dst, "", nil); err != nil {
		t.Fatalf("RestoreSnapshot() over an interrupted first start = %v", err)
	}
	e := startTestMember(t, EmbeddedConfig{Dir: dst})
	if v, ok := etcdGet(t, e.Client(), "/k"); !ok || v != "v" {
		t.Errorf("Get(/k) after restore = %q, %v; want %q (restored data discarded?)", v, ok, "v")
	}
}

func TestRestoreSnapshotDamagedFile(t *testing.T) {
	src := startTestMember(t, EmbeddedConfig{Dir: filepath.Join(t.TempDir(), "src")})
	for i := range 50 {
		etcdPut(t, src.Client(), "/k/"+strings.Repeat("x", i), strings.Repeat("v", 100))
	}
	snap := saveSnapshotFile(t, src.Client())
	good, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}

	flipped := slices.Clone(good)
	flipped[len(flipped)/2] ^= 0xff
	tests := []struct {
		name string
		data []byte
	}{
		{"truncated to half", good[:len(good)/2]},
		{"truncated checksum", good[:len(good)-1]},
		{"flipped byte", flipped},
		{"empty", nil},
		{"not a snapshot", []byte(strings.Repeat("garbage!", 4096))},
		{"not a database, valid checksum", withChecksum([]byte(strings.Repeat("garbage!", 4096)))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.db")
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(t.TempDir(), "dst")
			if err := RestoreSnapshot(path, dst, "", nil); err == nil {
				t.Fatal("RestoreSnapshot(damaged file) = nil error, want an error")
			} else {
				t.Logf("RestoreSnapshot(damaged file) = %v", err)
			}
			// Nothing half-restored is left behind.
			if _, err := os.Stat(filepath.Join(dst, "member")); !os.IsNotExist(err) {
				t.Errorf("member directory exists after a failed restore (stat: %v)", err)
			}
		})
	}

	if err := RestoreSnapshot(filepath.Join(t.TempDir(), "missing.db"), t.TempDir(), "", nil); err == nil {
		t.Error("RestoreSnapshot(missing file) = nil error, want an error")
	}
}

// withChecksum appends the SHA-256 of data, as etcd does to a snapshot.
func withChecksum(data []byte) []byte {
	sum := sha256.Sum256(data)
	return append(slices.Clone(data), sum[:]...)
}
