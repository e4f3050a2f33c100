package apiserver_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/agent/streams"
	"github.com/paddock-dev/paddock/core/agent/streams/streamstest"
	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/cli"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/core/server"
	"github.com/paddock-dev/paddock/internal/testcluster"
)

// streamCluster is a control plane whose node n1 is served by a real
// stream endpoint on loopback.
type streamCluster struct {
	*testcluster.Cluster
	audit    string
	endpoint api.NodeDaemonEndpoint
}

// startStreamCluster starts a control plane with an audit log, a stream
// endpoint resolving containers with res, node n1 publishing it, tenants
// acme and other, and pods acme/web (one container "c", on n1),
// acme/multi (containers a and b, on n1), acme/pending (on no node) and
// other/theirs (on n1).
func startStreamCluster(t *testing.T, res streams.Resolver) *streamCluster {
	t.Helper()
	audit := filepath.Join(t.TempDir(), "audit.log")
	c := testcluster.Start(t, func(cfg *server.Config) { cfg.AuditLog = audit })
	_, ep := streamstest.Serve(t, streams.Config{DataDir: t.TempDir(), ClientCA: []byte(c.AdminConfig.CertificateAuthority), Resolver: res})
	sc := &streamCluster{Cluster: c, audit: audit, endpoint: ep}
	for _, name := range []string{"acme", "other"} {
		mustCreate(t, c.Admin, &api.Tenant{Metadata: api.ObjectMeta{Name: name}})
	}
	mustCreate(t, c.Admin, &api.Node{Metadata: api.ObjectMeta{Name: "n1"}})
	sc.publish(t, sc.endpoint)
	pod := func(tenant, name, node string, containers ...string) {
		p := &api.Pod{Metadata: api.ObjectMeta{Name: name, Tenant: tenant}, Spec: api.PodSpec{NodeName: node}}
		for _, cn := range containers {
			p.Spec.Containers = append(p.Spec.Containers, api.Container{Name: cn, Image: streamstest.Image})
		}
		mustCreate(t, c.Admin, p)
	}
	pod("acme", "web", "n1", "c")
	pod("acme", "multi", "n1", "a", "b")
	pod("acme", "pending", "", "c")
	pod("other", "theirs", "n1", "c")
	return sc
}

func mustCreate(t *testing.T, c *client.Client, obj api.Object) {
	t.Helper()
	if _, err := c.Create(t.Context(), obj); err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetObjectMeta().Name, err)
	}
}

// publish sets node n1's daemon endpoint as its agent does.
func (sc *streamCluster) publish(t *testing.T, ep api.NodeDaemonEndpoint) {
	t.Helper()
	n, err := client.GetAs[*api.Node](t.Context(), sc.Admin, "", "n1")
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []api.NodeAddress{{Type: "InternalIP", Address: "127.0.0.1"}}
	n.Status.DaemonEndpoint = ep
	if _, err := sc.Admin.UpdateStatus(t.Context(), n); err != nil {
		t.Fatalf("publish the daemon endpoint: %v", err)
	}
}

// auditRecord is what the tests read back from the audit log.
type auditRecord struct {
	Role, UserTenant, Verb, Subresource, Tenant, Name string
	Command                                           []string
	Status                                            int
}

// waitAudit waits for an audit line matching want.
func (sc *streamCluster) waitAudit(t *testing.T, what string, want func(auditRecord) bool) auditRecord {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, err := os.Open(sc.audit)
		if err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(f)
		for lines.Scan() {
			var r auditRecord
			if json.Unmarshal(lines.Bytes(), &r) == nil && want(r) {
				f.Close()
				return r
			}
		}
		f.Close()
		if time.Now().After(deadline) {
			t.Fatalf("no audit record of %s in %s", what, sc.audit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readLogs reads a container's log through the API.
func readLogs(ctx context.Context, c *client.Client, tenant, pod string, opts client.LogOptions) (string, error) {
	rc, err := c.Logs(ctx, tenant, pod, opts)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

// notRunning is an agent resolver that finds every container stopped,
// saying so in a message the tests recognise as the agent's.
type notRunning struct{}

func (notRunning) Resolve(_ context.Context, tenant, pod, container string) (streams.Target, error) {
	return streams.Target{}, errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("agent: container %s/%s/%s is not running", tenant, pod, container))
}

func TestLogsAndExecAuthorization(t *testing.T) {
	sc := startStreamCluster(t, notRunning{})
	ctx := t.Context()
	acmeAdmin := sc.Client(t, api.RoleAdmin, "acme", "")
	acmeEdit := sc.Client(t, api.RoleEdit, "acme", "")
	acmeView := sc.Client(t, api.RoleView, "acme", "")
	otherAdmin := sc.Client(t, api.RoleAdmin, "other", "")
	node := sc.Client(t, api.RoleNode, "", "n1")

	logs := func(c *client.Client, pod, container string) error {
		_, err := readLogs(ctx, c, "acme", pod, client.LogOptions{Container: container})
		return err
	}
	exec := func(c *client.Client, pod, container string) error {
		_, err := c.Exec(ctx, "acme", pod, client.ExecOptions{Container: container, Command: []string{"sh", "-c", "id"}})
		return err
	}
	agent := func(pod, container string) string {
		return "agent: container acme/" + pod + "/" + container + " is not running"
	}
	cases := []struct {
		name      string
		do        func() error
		class     error
		message   string
		forbidden bool
	}{
		{"admin logs", func() error { return logs(acmeAdmin, "web", "") }, errdefs.ErrFailedPrecondition, agent("web", "c"), false},
		{"admin exec", func() error { return exec(acmeAdmin, "web", "") }, errdefs.ErrFailedPrecondition, agent("web", "c"), false},
		{"edit exec", func() error { return exec(acmeEdit, "web", "c") }, errdefs.ErrFailedPrecondition, agent("web", "c"), false},
		{"view logs", func() error { return logs(acmeView, "web", "") }, errdefs.ErrFailedPrecondition, agent("web", "c"), false},
		{"view exec", func() error { return exec(acmeView, "web", "") }, errdefs.ErrPermissionDenied, "role view is read-only", true},
		{"other tenant logs", func() error { return logs(otherAdmin, "web", "") }, errdefs.ErrPermissionDenied, `for tenant "other" only`, true},
		{"other tenant logs of a missing pod", func() error { return logs(otherAdmin, "ghost", "") }, errdefs.ErrPermissionDenied, `for tenant "other" only`, true},
		{"other tenant exec", func() error { return exec(otherAdmin, "web", "") }, errdefs.ErrPermissionDenied, `for tenant "other" only`, true},
		{"other tenant exec in a missing pod", func() error { return exec(otherAdmin, "ghost", "") }, errdefs.ErrPermissionDenied, `for tenant "other" only`, true},
		{"node logs", func() error { return logs(node, "web", "") }, errdefs.ErrPermissionDenied, "a node neither reads logs nor runs commands", true},
		{"node exec", func() error { return exec(node, "web", "") }, errdefs.ErrPermissionDenied, "a node neither reads logs nor runs commands", true},
		{"cluster admin logs", func() error { return logs(sc.Admin, "web", "") }, errdefs.ErrFailedPrecondition, agent("web", "c"), false},
		{"cluster admin exec", func() error { return exec(sc.Admin, "web", "") }, errdefs.ErrFailedPrecondition, agent("web", "c"), false},
		{"unbound pod", func() error { return logs(acmeAdmin, "pending", "") }, errdefs.ErrFailedPrecondition, `pod "pending" is not running on a node yet`, false},
		{"unbound pod exec", func() error { return exec(acmeAdmin, "pending", "") }, errdefs.ErrFailedPrecondition, `pod "pending" is not running on a node yet`, false},
		{"missing pod", func() error { return logs(acmeAdmin, "ghost", "") }, errdefs.ErrNotFound, "ghost", false},
		{"several containers", func() error { return logs(acmeAdmin, "multi", "") }, errdefs.ErrBadRequest, `pod "multi" has 2 containers: choose one of a, b`, false},
		{"second container", func() error { return exec(acmeAdmin, "multi", "b") }, errdefs.ErrFailedPrecondition, agent("multi", "b"), false},
		{"unknown container", func() error { return logs(acmeAdmin, "web", "db") }, errdefs.ErrBadRequest, `pod "web" has no container "db"`, false},
		{"bad parameter reaches the agent", func() error {
			_, err := readLogs(ctx, acmeAdmin, "acme", "web", client.LogOptions{Since: time.Minute, SinceTime: time.Now()})
			return err
		}, errdefs.ErrBadRequest, "at most one of sinceSeconds and sinceTime", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if !errors.Is(err, tc.class) || !strings.Contains(fmt.Sprint(err), tc.message) {
				t.Errorf("got %v, want class %v with %q", err, tc.class, tc.message)
			}
		})
	}

	t.Run("exec without command", func(t *testing.T) {
		_, err := acmeAdmin.Do(ctx, "GET", "/api/v1/tenants/acme/pods/web/exec", nil, nil)
		if !errors.Is(err, errdefs.ErrBadRequest) || errdefs.FieldOf(err) != "command" {
			t.Errorf("exec without command = %v, want 400 on field command", err)
		}
	})
	t.Run("audited", func(t *testing.T) {
		denied := sc.waitAudit(t, "view's denied exec", func(r auditRecord) bool {
			return r.Subresource == "exec" && r.Role == "view" && r.Status == 403
		})
		if denied.Verb != "create" || !slices.Equal(denied.Command, []string{"sh", "-c", "id"}) || denied.Tenant != "acme" || denied.Name != "web" {
			t.Errorf("denied exec audited as %+v, want verb create on acme/web with the command", denied)
		}
		sc.waitAudit(t, "the other tenant's denied logs of a missing pod", func(r auditRecord) bool {
			return r.Subresource == "log" && r.UserTenant == "other" && r.Name == "ghost" && r.Status == 403 && r.Verb == "get"
		})
		sc.waitAudit(t, "the admin's logs answered by the agent", func(r auditRecord) bool {
			return r.Subresource == "log" && r.Role == "admin" && r.Name == "web" && r.Status == 412
		})
	})
	t.Run("wrong fingerprint", func(t *testing.T) {
		sc.publish(t, api.NodeDaemonEndpoint{Port: sc.endpoint.Port, CertSHA256: strings.Repeat("ab", 32)})
		defer sc.publish(t, sc.endpoint)
		err := logs(acmeAdmin, "web", "")
		if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), `cannot reach the agent of node "n1"`) || !strings.Contains(err.Error(), "fingerprint") {
			t.Errorf("logs from an agent with another certificate = %v, want 503 naming the fingerprint", err)
		}
	})
	t.Run("no endpoint", func(t *testing.T) {
		sc.publish(t, api.NodeDaemonEndpoint{})
		defer sc.publish(t, sc.endpoint)
		if err := logs(acmeAdmin, "web", ""); !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "daemon endpoint") {
			t.Errorf("logs from a node without an endpoint = %v, want 503 saying so", err)
		}
	})
}

// TestLogsAndExecThroughTheAPIServer runs a real container behind the
// stream endpoint and reaches it through the API server with the Go
// client and the command line.
func TestLogsAndExecThroughTheAPIServer(t *testing.T) {
	rt := streamstest.StartRunc(t)
	id := rt.RunContainer(t, "sh", "-c", "echo hello; echo world; sleep 100000")
	sc := startStreamCluster(t, streamstest.Resolver{"acme/web/c": {Runtime: rt.Client, ContainerID: id}})
	ctx := t.Context()
	edit := sc.Client(t, api.RoleEdit, "acme", "")

	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := readLogs(ctx, edit, "acme", "web", client.LogOptions{})
		if err == nil && got == "hello\nworld\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs = %q, %v, want hello world", got, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	one := int64(1)
	if got, err := readLogs(ctx, edit, "acme", "web", client.LogOptions{TailLines: &one}); got != "world\n" || err != nil {
		t.Errorf("logs --tail 1 = %q, %v, want world", got, err)
	}

	var stdout, stderr bytes.Buffer
	code, err := edit.Exec(ctx, "acme", "web", client.ExecOptions{Command: []string{"sh", "-c", "echo out; echo err >&2; exit 5"}, Stdout: &stdout, Stderr: &stderr})
	if err != nil || code != 5 || stdout.String() != "out\n" || stderr.String() != "err\n" {
		t.Errorf("exec = %d, %v, stdout %q, stderr %q, want 5, out, err", code, err, stdout.String(), stderr.String())
	}

	stdout.Reset()
	code, err = edit.Exec(ctx, "acme", "web", client.ExecOptions{Command: []string{"cat"}, Stdin: strings.NewReader("piped\n"), Stdout: &stdout})
	if err != nil || code != 0 || stdout.String() != "piped\n" {
		t.Errorf("exec cat = %d, %v, stdout %q, want 0 and piped", code, err, stdout.String())
	}

	stdout.Reset()
	sizes := make(chan client.Size, 1)
	sizes <- client.Size{Width: 100, Height: 30}
	in, feed := io.Pipe()
	go func() { feed.Write([]byte("\n")); feed.Close() }()
	code, err = edit.Exec(ctx, "acme", "web", client.ExecOptions{Command: []string{"sh", "-c", "read x; stty size"}, Stdin: in, Stdout: &stdout, TTY: true, Resize: sizes})
	if err != nil || code != 0 || !strings.Contains(stdout.String(), "30 100\r\n") {
		t.Errorf("exec on a terminal = %d, %v, stdout %q, want stty size 30 100", code, err, stdout.String())
	}
	sc.waitAudit(t, "the terminal exec", func(r auditRecord) bool {
		return r.Subresource == "exec" && r.Status == 101 && slices.Equal(r.Command, []string{"sh", "-c", "read x; stty size"})
	})

	t.Run("command line", func(t *testing.T) {
		conf := server.AdminConfigPath(sc.DataDir)
		var out, errOut bytes.Buffer
		root := cli.NewRoot(&out, &errOut)
		root.SetArgs([]string{"--config", conf, "logs", "web", "-t", "acme", "--tail", "1"})
		if err := root.ExecuteContext(ctx); err != nil || out.String() != "world\n" {
			t.Errorf("paddock logs web --tail 1 = %v, %q, want world", err, out.String())
		}
		out.Reset()
		root = cli.NewRoot(&out, &errOut)
		root.SetArgs([]string{"--config", conf, "exec", "web", "--tenant", "acme", "--", "sh", "-c", "echo from-cli; exit 4"})
		err := root.ExecuteContext(ctx)
		var ee *cli.ExitError
		if !errors.As(err, &ee) || ee.Code != 4 || out.String() != "from-cli\n" {
			t.Errorf("paddock exec = %v, %q, want exit code 4 and from-cli", err, out.String())
		}
	})
}
