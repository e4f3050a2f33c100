package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/conformance/cli"
	"github.com/paddock-dev/paddock/conformance/report"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/internal/testbin"
	"github.com/paddock-dev/paddock/internal/testlock"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// outcomes is what the conformance suite must report for the example,
// case by case. README.md has the same table; TestReadmeTable keeps the
// two equal. A case the suite gains fails TestConformance until it is
// added to both.
var outcomes = []struct {
	id     string
	status report.Status
	why    string // for skip and fail
}{
	{"RT-CAP-001", report.Pass, ""},
	{"RT-CAP-002", report.Pass, ""},
	{"RT-CAP-003", report.Pass, ""},
	{"RT-CT-001", report.Pass, ""},
	{"RT-CT-002", report.Pass, ""},
	{"RT-CT-003", report.Pass, ""},
	{"RT-CT-004", report.Pass, ""},
	{"RT-CT-005", report.Pass, ""},
	{"RT-CT-006", report.Pass, ""},
	{"RT-CT-007", report.Pass, ""},
	{"RT-CT-008", report.Skip, "exec: volumes are checked from inside the container (and the example makes no bind mounts)"},
	{"RT-CT-009", report.Skip, "read_only_rootfs"},
	{"RT-CT-010", report.Fail, "no cgroups: CreateContainer refuses a memory limit (NotImplemented) rather than ignore it"},
	{"RT-CT-011", report.Skip, "update_resources"},
	{"RT-EX-001", report.Skip, "exec"},
	{"RT-EX-002", report.Skip, "exec"},
	{"RT-EX-003", report.Skip, "exec"},
	{"RT-EX-004", report.Skip, "exec_tty"},
	{"RT-EX-006", report.Pass, ""},
	{"RT-EX-007", report.Pass, ""},
	{"RT-HS-001", report.Pass, ""},
	{"RT-HS-002", report.Pass, ""},
	{"RT-HS-003", report.Pass, ""},
	{"RT-HS-004", report.Pass, ""},
	{"RT-HS-005", report.Pass, ""},
	{"RT-HS-006", report.Pass, ""},
	{"RT-HS-007", report.Pass, ""},
	{"RT-ID-001", report.Pass, ""},
	{"RT-ID-002", report.Pass, ""},
	{"RT-ID-003", report.Pass, ""},
	{"RT-ID-004", report.Pass, ""},
	{"RT-IS-001", report.Skip, "exec"},
	{"RT-IS-002", report.Skip, "exec"},
	{"RT-IS-005", report.Skip, "exec"},
	{"RT-RC-001", report.Skip, "recover: containers_tied_to_plugin"},
	{"RT-RC-002", report.Skip, "recover: containers_tied_to_plugin"},
	{"RT-RC-003", report.Pass, ""},
	{"RT-SB-001", report.Pass, ""},
	{"RT-SB-002", report.Pass, ""},
	{"RT-SB-003", report.Pass, ""},
	{"RT-SB-004", report.Pass, ""},
	{"RT-SB-006", report.Skip, "exec"},
}

// TestConformance runs the whole runtime conformance suite against the
// example through the `paddock conformance runtime` command's own code,
// which launches the plugin through plugins/pluginhost as the agent does,
// and holds every case to its row of outcomes. The suite checks after
// each case that no process or mount was left behind.
func TestConformance(t *testing.T) {
	archive := prerequisites(t)
	testlock.Machine(t)
	bin := pluginBinary(t)
	dir := t.TempDir()
	reports, volumes := filepath.Join(dir, "report"), filepath.Join(dir, "volumes")
	if err := os.Mkdir(volumes, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := cli.New(&out, &errOut)
	cmd.SetErr(&errOut)
	// --volume-root: the plugin's configuration is handed over as it is
	// ({}), not extended with the runc plugin's allowedMountRoots.
	cmd.SetArgs([]string{"runtime", "--plugin", bin, "--image-archive", archive, "--report-dir", reports,
		"--volume-root", volumes, "--case-timeout", "1m"})
	runErr := cmd.ExecuteContext(ctx)
	raw, err := os.ReadFile(filepath.Join(reports, "results.json"))
	if err != nil {
		t.Fatalf("the conformance command wrote no report (%v): %v\n%s%s", err, runErr, out.String(), errOut.String())
	}
	var rep report.Report
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	got := map[string]report.Result{}
	for _, r := range rep.Results {
		got[r.ID] = r
	}
	for _, want := range outcomes {
		r, ok := got[want.id]
		switch {
		case !ok:
			t.Errorf("%s: the suite did not run it; remove it from the outcome table here and in README.md", want.id)
		case r.Status != want.status:
			t.Errorf("%s %s = %s, want %s (%s)\n    %s\n    leaks: %q", r.ID, r.Name, r.Status, want.status, want.why, r.Reason, r.Leaks)
		}
		delete(got, want.id)
	}
	for id, r := range got {
		t.Errorf("%s %s = %s (%s): a case missing from the outcome table; add it here and to README.md", id, r.Name, r.Status, r.Reason)
	}
	if t.Failed() {
		t.Logf("conformance output:\n%s", out.String())
	}
}

// TestReadmeTable checks that README.md's outcome table says what the
// outcomes table here does.
func TestReadmeTable(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile(`(?m)^\| (RT-[A-Z]+-\d+) \| (pass|skip|fail) \|`)
	var got []string
	for _, m := range row.FindAllStringSubmatch(string(readme), -1) {
		got = append(got, m[1]+" "+m[2])
	}
	var want []string
	for _, o := range outcomes {
		want = append(want, o.id+" "+string(o.status))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("README.md's outcome table, in order:\n%s\nwant (outcomes in example_test.go):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestSetConfig checks the configuration's validation: unknown fields and
// bad paths are InvalidArgument naming the field, and a refused
// configuration leaves the plugin as it was.
func TestSetConfig(t *testing.T) {
	state := t.TempDir()
	set := func(rt *Runtime, cfg string) error {
		_, err := rt.SetConfig(t.Context(), &runtimev1.SetConfigRequest{ApiVersion: runtimev1.APIVersion, StateDir: state, Config: []byte(cfg)})
		return err
	}
	other := t.TempDir()
	rt := newRuntime()
	rt.log = slog.New(slog.DiscardHandler)
	for _, tc := range []struct{ config, field, mention string }{
		{`{"rootdir": "` + other + `"}`, "rootdir", "unknown field"},
		{`{"rootDir": "` + other + `", "logLevel": "debug"}`, "logLevel", "unknown field"},
		{`{"rootDir": "relative"}`, "rootDir", "absolute"},
		{`{"rootDir": "/"}`, "rootDir", "other than /"},
		{`{"rootDir": 7}`, "config", "rootDir"},
		{`{} {}`, "config", "JSON object"},
		{`[]`, "config", "JSON object"},
	} {
		err := set(rt, tc.config)
		if !errors.Is(err, errdefs.ErrInvalidArgument) || errdefs.FieldOf(err) != tc.field || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("SetConfig(%s) = %v, want InvalidArgument on field %s mentioning %s", tc.config, err, tc.field, tc.mention)
		}
	}
	if _, err := rt.configured(); err == nil {
		t.Errorf("a refused configuration configured the plugin")
	}
	if err := set(rt, `{}`); err != nil {
		t.Fatalf("SetConfig({}) = %v", err)
	}
	if err := set(rt, ""); err != nil {
		t.Errorf("SetConfig again with the same root = %v, want OK (the host calls again on reattach)", err)
	}
	if err := set(rt, `{"rootDir": "`+other+`"}`); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("SetConfig with another root after the first = %v, want FailedPrecondition", err)
	}
}

// TestUnpackStaysInside feeds unpack archives that try to write outside
// the directory, by name and through a symbolic link they make, and
// checks that both are refused and nothing lands outside.
func TestUnpackStaysInside(t *testing.T) {
	for name, entries := range map[string][]tar.Header{
		"dot-dot":  {{Name: "../escaped", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}},
		"symlink":  {{Name: "up", Typeflag: tar.TypeSymlink, Linkname: ".."}, {Name: "up/escaped", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}},
		"absolute": {{Name: "abs", Typeflag: tar.TypeSymlink, Linkname: "/tmp"}, {Name: "abs/escaped", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}},
	} {
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, h := range entries {
				if err := tw.WriteHeader(&h); err != nil {
					t.Fatal(err)
				}
				if h.Size > 0 {
					tw.Write([]byte("x"))
				}
			}
			tw.Close()
			archive := filepath.Join(base, "a.tar")
			if err := os.WriteFile(archive, buf.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			err := unpack(archive, filepath.Join(base, "root"))
			if err == nil {
				t.Errorf("unpack of an archive escaping by %s succeeded; want an error", name)
			}
			for _, p := range []string{filepath.Join(base, "escaped"), "/tmp/escaped"} {
				if _, serr := os.Lstat(p); serr == nil {
					os.Remove(p)
					t.Errorf("unpack wrote %s outside its directory (err %v)", p, err)
				}
			}
		})
	}
}

// prerequisites returns the test image archive. Without root, or without
// the archive, the test skips outside CI and fails under CI=true.
func prerequisites(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the example's conformance test needs root (namespaces, chroot), and CI=true")
		}
		t.Skip("skipping: needs root (namespaces, chroot)")
	}
	return testbin.Image(t, "busybox")
}

// pluginBinary returns $PADDOCK_EXAMPLE_BIN, or builds the example.
func pluginBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("PADDOCK_EXAMPLE_BIN"); bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	bin := filepath.Join(t.TempDir(), "paddock-example-runtime")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
