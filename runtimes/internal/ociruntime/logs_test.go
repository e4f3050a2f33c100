package ociruntime

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// RT-EX-007 (bounds), RT-EX-006: the log file rotates at log_max_bytes
// keeping one rotated file; Logs reads across the rotation in order; a
// line longer than 16 KiB is cut into partial lines.
func TestLogRotation(t *testing.T) {
	t.Parallel()
	h := newHarnessConfig(t, `{"logMaxBytes":65536}`)
	sb := h.sandbox(nil)
	const n = 4000
	script := fmt.Sprintf(`awk 'BEGIN{for(i=1;i<=%d;i++) printf "line %%d %%s\n", i, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}'; head -c 40000 /dev/zero | tr '\0' y; echo; echo last`, n)
	c := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "chatty", Command: []string{"sh", "-c", script}})
	if ex := h.wait(c.Id); ex.ExitCode != 0 {
		t.Fatalf("exit = %v", ex)
	}
	dir := filepath.Join(h.stateDir, "containers", c.Id)
	for _, f := range []string{logFile, logFile + ".1"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if fi.Size() > 65536 {
			t.Errorf("%s is %d bytes, over the 65536 cap", f, fi.Size())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, logFile+".2")); !os.IsNotExist(err) {
		t.Errorf("a second rotated file exists: %v", err)
	}
	lines := h.logs(&runtimev1.LogsRequest{Id: c.Id})
	if len(lines) < 100 {
		t.Fatalf("only %d lines after rotation", len(lines))
	}
	// The tail: the long line in 16 KiB parts, then "last".
	last := lines[len(lines)-1]
	if string(last.Line) != "last" || last.Partial {
		t.Errorf("last line = %v, want last", last)
	}
	long := lines[len(lines)-4 : len(lines)-1]
	var joined []byte
	for i, l := range long {
		joined = append(joined, l.Line...)
		if want := i < 2; l.Partial != want {
			t.Errorf("long line part %d partial = %v, want %v", i, l.Partial, want)
		}
	}
	if !bytes.Equal(joined, bytes.Repeat([]byte("y"), 40000)) {
		t.Errorf("long line reassembled to %d bytes, want 40000 y", len(joined))
	}
	// Before it: a contiguous run of numbered lines ending with n.
	prev := -1
	for _, l := range lines[:len(lines)-4] {
		f := strings.Fields(string(l.Line))
		if len(f) != 3 || f[0] != "line" {
			t.Fatalf("unexpected line %q", l.Line)
		}
		i, _ := strconv.Atoi(f[1])
		if prev != -1 && i != prev+1 {
			t.Fatalf("line %d follows %d: lines lost or reordered across the rotation", i, prev)
		}
		prev = i
	}
	if prev != n {
		t.Errorf("last numbered line = %d, want %d", prev, n)
	}
	for i := 1; i < len(lines); i++ {
		if lines[i].Timestamp < lines[i-1].Timestamp {
			t.Fatalf("timestamps go back at line %d", i)
		}
	}
}

// Logs with follow streams lines as they are written and ends when the
// container exits.
func TestLogsFollow(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	sb := h.sandbox(nil)
	c := h.create(sb.Id, &runtimev1.ContainerConfig{Name: "follow",
		Command: []string{"sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2; done; echo done >&2"}})
	s := &collectStream[runtimev1.LogLine]{ctx: t.Context()}
	done := make(chan error, 1)
	go func() { done <- h.p.Logs(&runtimev1.LogsRequest{Id: c.Id, Follow: true}, s) }()
	if _, err := h.p.StartContainer(t.Context(), &runtimev1.StartContainerRequest{Id: c.Id}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first line while the container runs", 10*time.Second, func() bool { return len(s.snapshot()) > 0 })
	if st := h.inspect(c.Id).State; st != runtimev1.ContainerState_CONTAINER_RUNNING {
		t.Logf("container already %v when the first line arrived", st)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Logs(follow) did not end after the container exited")
	}
	var got []string
	for _, l := range s.snapshot() {
		got = append(got, l.Stream+":"+string(l.Line))
	}
	if strings.Join(got, ",") != "stdout:1,stdout:2,stdout:3,stderr:done" {
		t.Errorf("followed %v", got)
	}
}
