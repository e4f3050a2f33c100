package ociruntime

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/internal/ociruntime/shim"
	"golang.org/x/sys/unix"
)

func TestParseSignal(t *testing.T) {
	tests := []struct {
		in   string
		want unix.Signal
		ok   bool
	}{
		{"", unix.SIGTERM, true},
		{"SIGUSR1", unix.SIGUSR1, true},
		{"USR1", unix.SIGUSR1, true},
		{"usr2", unix.SIGUSR2, true},
		{"sigkill", unix.SIGKILL, true},
		{"10", unix.SIGUSR1, true},
		{"64", unix.Signal(64), true},
		{"SIGRTMIN", unix.Signal(34), true},
		{"RTMIN+3", unix.Signal(37), true},
		{"SIGRTMAX-1", unix.Signal(63), true},
		{"0", 0, false},
		{"65", 0, false},
		{"-9", 0, false},
		{"SIGNOPE", 0, false},
		{"RTMIN-1", 0, false},
		{"RTMAX+1", 0, false},
		{"RTMIN+x", 0, false},
	}
	for _, tc := range tests {
		got, err := parseSignal("signal", tc.in, unix.SIGTERM)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("parseSignal(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestProcessArgs(t *testing.T) {
	img := &runtimev1.Image{Entrypoint: []string{"/entry"}, Cmd: []string{"default"}}
	tests := []struct {
		name          string
		command, args []string
		img           *runtimev1.Image
		want          []string
	}{
		{"image only", nil, nil, img, []string{"/entry", "default"}},
		{"args replace cmd", nil, []string{"a"}, img, []string{"/entry", "a"}},
		{"command drops cmd", []string{"/bin/x"}, nil, img, []string{"/bin/x"}},
		{"command and args", []string{"/bin/x"}, []string{"a", "b"}, img, []string{"/bin/x", "a", "b"}},
		{"no entrypoint", nil, nil, &runtimev1.Image{Cmd: []string{"sh"}}, []string{"sh"}},
		{"nothing", nil, nil, &runtimev1.Image{}, nil},
	}
	for _, tc := range tests {
		got, err := processArgs(&runtimev1.ContainerConfig{Command: tc.command, Args: tc.args}, tc.img)
		if tc.want == nil {
			if err == nil {
				t.Errorf("processArgs(%s) = %q, want an error", tc.name, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("processArgs(%s) = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestProcessEnv(t *testing.T) {
	got := processEnv(&runtimev1.ContainerConfig{Env: map[string]string{"B": "2", "A": "x=y"}},
		&runtimev1.Image{Env: []string{"PATH=/img", "A=old", "C=3"}}, "host")
	want := []string{"PATH=/img", "HOSTNAME=host", "A=x=y", "C=3", "B=2"}
	if !slices.Equal(got, want) {
		t.Errorf("processEnv = %q, want %q", got, want)
	}
}

func TestCheckWorkingDir(t *testing.T) {
	for in, ok := range map[string]bool{
		"/": true, "/tmp": true, "/home/app/": true, "/procfs": true,
		"/proc": false, "/proc/self/fd/7": false, "/tmp/../proc/1/cwd": false, "/proc/thread-self/fd/3": false,
		"tmp": false, "": false,
	} {
		if err := checkWorkingDir(in); (err == nil) != ok {
			t.Errorf("checkWorkingDir(%q) = %v, want ok=%v", in, err, ok)
		}
	}
}

// TestCheckWorkingDirIn resolves working directories inside a crafted
// root filesystem: symbolic links into /proc, absolute or relative, direct
// or chained, and ".." that tries to climb out of the root, are refused;
// ordinary directories and links are not, and nothing outside the root
// is followed.
func TestCheckWorkingDirIn(t *testing.T) {
	root := t.TempDir()
	// A host directory the links must never reach: were it followed, its
	// link to /proc would refuse /escape/p.
	outside := t.TempDir()
	if err := os.Symlink("/proc", filepath.Join(outside, "p")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"proc", "home/app", "data", "deep/a/b"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"fd":         "/proc/self/fd/7",
		"rel":        "../../proc/self/fd/8",
		"home/up":    "../../../../proc/1/cwd",
		"chain":      "/fd",
		"home/work":  "/data",
		"loop":       "loop",
		"escape":     outside,
		"deep/a/b/c": "../../../proc",
		"procdir":    "proc",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		cwd  string
		want string // "" when refused
	}{
		{"/home/app", "/home/app"},
		{"/home/work", "/data"},
		{"/home/work/new/dir", "/data/new/dir"},
		{"/missing/../home", "/home"},
		{"/escape", outside},
		{"/escape/p", outside + "/p"},
		{"/fd", ""},
		{"/rel", ""},
		{"/home/up", ""},
		{"/chain", ""},
		{"/chain/x", ""},
		{"/deep/a/b/c/self", ""},
		{"/procdir", ""},
		{"/loop", ""},
	} {
		err := checkWorkingDirIn(root, tc.cwd)
		if (err == nil) != (tc.want != "") {
			t.Errorf("checkWorkingDirIn(%q) = %v, want refused %v", tc.cwd, err, tc.want == "")
		}
		if tc.want == "" {
			continue
		}
		// The resolved path is in the container: a link to a host
		// directory names that path inside the root, never the host's.
		if got, err := resolveInRoot(root, tc.cwd); err != nil || got != tc.want {
			t.Errorf("resolveInRoot(%q) = %q, %v; want %q", tc.cwd, got, err, tc.want)
		}
	}
}

func TestAllowedHostPath(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	os.Mkdir(filepath.Join(root, "d"), 0o755)
	os.Symlink(filepath.Join(root, "d"), filepath.Join(root, "in"))
	os.Symlink(outside, filepath.Join(root, "out"))
	os.Symlink("..", filepath.Join(root, "up"))
	// A root that is itself a symbolic link resolves too.
	linkRoot := filepath.Join(t.TempDir(), "link")
	os.Symlink(root, linkRoot)
	roots := resolveRoots([]string{linkRoot})
	tests := []struct {
		in   string
		want string // "" for an error
	}{
		{root, root},
		{filepath.Join(root, "d"), filepath.Join(root, "d")},
		{filepath.Join(linkRoot, "d"), filepath.Join(root, "d")},
		{filepath.Join(root, "in"), filepath.Join(root, "d")},
		{filepath.Join(root, "out"), ""},
		{filepath.Join(root, "up"), ""},
		{filepath.Join(root, "missing"), ""},
		{outside, ""},
		{root + "-sibling", ""},
		{"relative", ""},
	}
	for _, tc := range tests {
		got, err := allowedHostPath(tc.in, roots)
		if tc.want == "" {
			if err == nil {
				t.Errorf("allowedHostPath(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("allowedHostPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestLogWriterAndParse(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.log")
	w, err := shim.OpenLogWriter(path, 200)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 15, 4, 5, 6, time.UTC)
	w.Now = func() time.Time { return now }
	shim.CopyStream(w, "stdout", strings.NewReader("one\ntwo\n"+strings.Repeat("x", shim.MaxLogLine+10)+"\nno newline"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var got []logEntry
	lf := &logFollower{path: path}
	if err := lf.readAll(func(e logEntry) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	lf.Close()
	// The file rotated several times; what is left is the tail.
	last := got[len(got)-1]
	if string(last.text) != "no newline" || last.partial || last.stream != "stdout" || !last.ts.Equal(now) {
		t.Errorf("last entry = %+v", last)
	}
	b, _ := os.ReadFile(path)
	if !bytes.HasPrefix(b, []byte("2026-01-02T15:04:05.000000006Z stdout F ")) {
		t.Errorf("log line = %q, want the CRI format", b)
	}
	if _, err := os.Stat(path + ".2"); !os.IsNotExist(err) {
		t.Errorf("more than one rotated file")
	}
	for _, bad := range []string{"", "nospace", "2026-01-02T15:04:05Z stdout", "yesterday stdout F x"} {
		if _, err := parseLogLine([]byte(bad)); err == nil {
			t.Errorf("parseLogLine(%q) succeeded", bad)
		}
	}
}

func TestParseConfigDefaults(t *testing.T) {
	cfg, err := parseConfig(Runc, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.withDefaults(Runc, "/state")
	if d.RuncPath != "runc" || d.LogMaxBytes != DefaultLogMaxBytes || !slices.Equal(d.AllowedMountRoots, []string{"/state/volumes"}) || d.ImageStoreRoot != "/state/images" {
		t.Errorf("defaults = %+v", d)
	}
}

func TestHandleRoundTrip(t *testing.T) {
	id := newID()
	got, err := parseHandle("runc", makeHandle("runc", id))
	if err != nil || got != id {
		t.Errorf("parseHandle(makeHandle(%s)) = %s, %v", id, got, err)
	}
}
