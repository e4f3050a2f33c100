package ociruntime

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// RT-CAP-002, RT-CAP-003: Health sends an event at once, reports a runc
// that went missing as unhealthy and its return as healthy, without a
// restart.
func TestHealth(t *testing.T) {
	t.Parallel()
	requirePrereqs(t)
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "runc")
	data, err := os.ReadFile(runc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	p := New(Options{HealthInterval: 20 * time.Millisecond})
	if _, err := p.SetConfig(t.Context(), &runtimev1.SetConfigRequest{ApiVersion: "v1", StateDir: filepath.Join(dir, "state"),
		Config: []byte(fmt.Sprintf(`{"runcPath":%q}`, bin))}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	events := make(chan *runtimev1.HealthEvent, 100)
	s := &collectStream[runtimev1.HealthEvent]{ctx: ctx, onSend: func(e *runtimev1.HealthEvent) { events <- e }}
	done := make(chan error, 1)
	go func() { done <- p.Health(&runtimev1.HealthRequest{}, s) }()
	next := func(what string) *runtimev1.HealthEvent {
		t.Helper()
		select {
		case e := <-events:
			return e
		case <-ctx.Done():
			t.Fatalf("no health event: %s", what)
			return nil
		}
	}
	if e := next("first"); !e.Healthy || e.Timestamp == 0 || e.Description == "" {
		t.Errorf("first event = %v, want healthy with a description", e)
	}
	if err := os.Rename(bin, bin+".away"); err != nil {
		t.Fatal(err)
	}
	if e := next("runc gone"); e.Healthy {
		t.Errorf("event after runc went away = %v, want unhealthy", e)
	}
	if err := os.Rename(bin+".away", bin); err != nil {
		t.Fatal(err)
	}
	if e := next("runc back"); !e.Healthy {
		t.Errorf("event after runc came back = %v, want healthy", e)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Health returned %v after its context ended", err)
	}
}
