package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdTestLogger returns a logger that writes etcd's warnings and errors to the
// test log, so a failing test shows why etcd failed.
func etcdTestLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// startTestMember starts a member on dir and closes it when the test ends.
func startTestMember(t *testing.T, cfg EmbeddedConfig) *Embedded {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = etcdTestLogger(t)
	}
	start := time.Now()
	e, err := StartEmbedded(t.Context(), cfg)
	if err != nil {
		t.Fatalf("StartEmbedded(%s) = %v", cfg.Dir, err)
	}
	t.Logf("embedded etcd in %s ready after %v", cfg.Dir, time.Since(start))
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return e
}

func etcdPut(t *testing.T, cli *clientv3.Client, key, val string) {
	t.Helper()
	if _, err := cli.Put(t.Context(), key, val); err != nil {
		t.Fatalf("Put(%q) = %v", key, err)
	}
}

func etcdGet(t *testing.T, cli *clientv3.Client, key string) (string, bool) {
	t.Helper()
	resp, err := cli.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q) = %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return "", false
	}
	return string(resp.Kvs[0].Value), true
}

func TestEmbeddedPersistsAcrossRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etcd")

	e := startTestMember(t, EmbeddedConfig{Dir: dir})
	etcdPut(t, e.Client(), "/paddock/tenants/a", "alpha")
	if got, ok := etcdGet(t, e.Client(), "/paddock/tenants/a"); !ok || got != "alpha" {
		t.Fatalf("Get after Put = %q, %v; want %q", got, ok, "alpha")
	}
	if e.ClientURL() != "" {
		t.Errorf("ClientURL() = %q with no ClientURL configured, want \"\"", e.ClientURL())
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close() = %v, want nil (idempotent)", err)
	}

	e2 := startTestMember(t, EmbeddedConfig{Dir: dir})
	if got, ok := etcdGet(t, e2.Client(), "/paddock/tenants/a"); !ok || got != "alpha" {
		t.Fatalf("Get after restart = %q, %v; want %q", got, ok, "alpha")
	}
}

func TestEmbeddedTwoMembersConcurrently(t *testing.T) {
	root := t.TempDir()
	members := make([]*Embedded, 2)
	var wg sync.WaitGroup
	errs := make([]error, len(members))
	for i := range members {
		wg.Go(func() {
			members[i], errs[i] = StartEmbedded(t.Context(), EmbeddedConfig{
				Dir:    filepath.Join(root, fmt.Sprint("m", i)),
				Name:   fmt.Sprint("member", i),
				Logger: etcdTestLogger(t),
			})
		})
	}
	wg.Wait()
	for i, m := range members {
		if errs[i] != nil {
			t.Fatalf("StartEmbedded(member %d) = %v", i, errs[i])
		}
		t.Cleanup(func() { m.Close() })
	}
	for i, m := range members {
		etcdPut(t, m.Client(), "/who", fmt.Sprint("member", i))
	}
	for i, m := range members {
		if got, _ := etcdGet(t, m.Client(), "/who"); got != fmt.Sprint("member", i) {
			t.Errorf("member %d: Get(/who) = %q, want %q: members share data", i, got, fmt.Sprint("member", i))
		}
	}
}

func TestEmbeddedSameDirRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etcd")
	startTestMember(t, EmbeddedConfig{Dir: dir})
	_, err := StartEmbedded(t.Context(), EmbeddedConfig{Dir: dir, Logger: etcdTestLogger(t)})
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second StartEmbedded on one dir = %v, want an \"in use\" error", err)
	}
}

func TestEmbeddedCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	start := time.Now()
	e, err := StartEmbedded(ctx, EmbeddedConfig{Dir: t.TempDir(), Logger: etcdTestLogger(t)})
	if err == nil {
		e.Close()
		t.Fatal("StartEmbedded(cancelled ctx) = nil error, want context.Canceled")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("StartEmbedded(cancelled ctx) = %v, want it to wrap context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("StartEmbedded(cancelled ctx) took %v, want it to return promptly", d)
	}
}

// TestEmbeddedCancelledWhileStarting cancels first starts at various points;
// whatever StartEmbedded returned, the directory must start again (etcd on
// its own leaves an unstartable member behind when stopped early in its
// first start).
func TestEmbeddedCancelledWhileStarting(t *testing.T) {
	root := t.TempDir()
	for i := range 15 {
		dir := filepath.Join(root, fmt.Sprint(i))
		after := time.Duration(i) * 3 * time.Millisecond
		ctx, cancel := context.WithTimeout(t.Context(), after)
		e, err := StartEmbedded(ctx, EmbeddedConfig{Dir: dir, Logger: etcdTestLogger(t)})
		cancel()
		switch {
		case err == nil:
			e.Close()
		case !errors.Is(err, context.DeadlineExceeded):
			t.Fatalf("StartEmbedded(ctx cancelled after %v) = %v, want nil or context.DeadlineExceeded", after, err)
		}

		ctx, cancel = context.WithTimeout(t.Context(), 20*time.Second)
		e, err = StartEmbedded(ctx, EmbeddedConfig{Dir: dir, Logger: etcdTestLogger(t)})
		cancel()
		if err != nil {
			t.Fatalf("restart after a first start cancelled after %v = %v", after, err)
		}
		etcdPut(t, e.Client(), "/k", "v")
		e.Close()
	}
}

// TestEmbeddedDiscardsInterruptedBootstrap simulates a process that died
// during a first start: the marker is there, the member directory is junk.
func TestEmbeddedDiscardsInterruptedBootstrap(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etcd")
	if err := os.MkdirAll(filepath.Join(dir, "member", "wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "member", "wal", "0000000000000000-0000000000000000.wal"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, embeddedBootstrapMarker), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e := startTestMember(t, EmbeddedConfig{Dir: dir})
	etcdPut(t, e.Client(), "/k", "v")
	if _, err := os.Stat(filepath.Join(dir, embeddedBootstrapMarker)); !os.IsNotExist(err) {
		t.Errorf("bootstrap marker still present after a successful start (stat: %v)", err)
	}
}

func TestEmbeddedCreatesPrivateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "etcd")
	startTestMember(t, EmbeddedConfig{Dir: dir})
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("mode of new data directory = %v, want 0700", got)
	}
}

func TestEmbeddedClientURL(t *testing.T) {
	e := startTestMember(t, EmbeddedConfig{Dir: filepath.Join(t.TempDir(), "etcd"), ClientURL: "http://127.0.0.1:0"})
	if !strings.HasPrefix(e.ClientURL(), "http://127.0.0.1:") || strings.HasSuffix(e.ClientURL(), ":0") {
		t.Fatalf("ClientURL() = %q, want http://127.0.0.1:<picked port>", e.ClientURL())
	}
	etcdPut(t, e.Client(), "/from/inside", "1")

	ext, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{e.ClientURL()},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("clientv3.New(%s) = %v", e.ClientURL(), err)
	}
	defer ext.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, err := ext.Get(ctx, "/from/inside")
	if err != nil {
		t.Fatalf("external Get = %v", err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "1" {
		t.Errorf("external Get = %v, want the value put in-process", resp.Kvs)
	}
	if _, err := ext.Put(ctx, "/from/outside", "2"); err != nil {
		t.Fatalf("external Put = %v", err)
	}
	if got, _ := etcdGet(t, e.Client(), "/from/outside"); got != "2" {
		t.Errorf("in-process Get of an external Put = %q, want %q", got, "2")
	}
}

func TestEmbeddedConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  EmbeddedConfig
		want string
	}{
		{"no dir", EmbeddedConfig{}, "Dir is empty"},
		{"non-loopback client url", EmbeddedConfig{ClientURL: "http://0.0.0.0:2379"}, "not a loopback address"},
		{"https client url", EmbeddedConfig{ClientURL: "https://127.0.0.1:2379"}, "scheme must be"},
		{"client url without port", EmbeddedConfig{ClientURL: "http://127.0.0.1"}, "no port"},
		{"bad compaction mode", EmbeddedConfig{AutoCompactionMode: "sometimes"}, "AutoCompactionMode"},
		{"bad revision retention", EmbeddedConfig{AutoCompactionMode: "revision", AutoCompactionRetention: "1h"}, "number of revisions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cfg.Dir == "" && tt.name != "no dir" {
				tt.cfg.Dir = t.TempDir()
			}
			e, err := StartEmbedded(t.Context(), tt.cfg)
			if err == nil {
				e.Close()
				t.Fatalf("StartEmbedded(%+v) = nil error, want one containing %q", tt.cfg, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("StartEmbedded(%+v) = %v, want an error containing %q", tt.cfg, err, tt.want)
			}
		})
	}
}

func TestEmbeddedLogsWarnings(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(lockedBuffer{&mu, &buf}, nil))
	lg := newZapLogger(logger, nil).Named("raft").With(zap.String("member", "m1"))
	lg.Info("chatter")
	lg.Warn("slow disk", zap.Duration("took", time.Second))

	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if strings.Contains(out, "chatter") {
		t.Errorf("info entry re-emitted: %s", out)
	}
	for _, want := range []string{`"msg":"slow disk"`, `"level":"WARN"`, `"component":"etcd"`, `"logger":"raft"`, `"member":"m1"`, `"took":`} {
		if !strings.Contains(out, want) {
			t.Errorf("log output %s lacks %s", out, want)
		}
	}
}

type lockedBuffer struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}
