package streams_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/paddock-dev/paddock/core/agent/streams"
	"github.com/paddock-dev/paddock/core/agent/streams/streamstest"
	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/pki"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// endpoint is a running stream server and an HTTP client that reaches it
// as the API server does.
type endpoint struct {
	srv  *streams.Server
	base string // https://127.0.0.1:PORT
	hc   *http.Client
	ca   *pki.Bundle
}

// start runs a stream server on loopback trusting a new cluster CA, with
// res resolving containers.
func start(t *testing.T, res streams.Resolver) *endpoint {
	t.Helper()
	ca, err := pki.EnsureServing(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, ep := streamstest.Serve(t, streams.Config{DataDir: t.TempDir(), ClientCA: ca.CAPEM, Resolver: res})
	cert, err := ca.IssueClient(pki.APIServerClientName)
	if err != nil {
		t.Fatal(err)
	}
	return &endpoint{srv: srv, base: fmt.Sprintf("https://127.0.0.1:%d", ep.Port), hc: pinnedClient(cert, srv.Fingerprint()), ca: ca}
}

func pinnedClient(cert tls.Certificate, fingerprint string) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: pki.PinnedClientTLS(cert, fingerprint)}}
}

// get answers a GET as status and body.
func (e *endpoint) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := e.hc.Get(e.base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

func TestTLSRefusesAllButTheAPIServer(t *testing.T) {
	e := start(t, streamstest.Resolver{})
	if code, body := e.get(t, "/logs/t/p/c"); code != http.StatusNotFound || !strings.Contains(body, `"reason":"NotFound"`) {
		t.Fatalf("the API server's certificate: GET = %d %s, want 404 NotFound (the request got through TLS)", code, body)
	}

	other, err := pki.EnsureServing(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.IssueClient(pki.APIServerClientName)
	if err != nil {
		t.Fatal(err)
	}
	wrongName, err := e.ca.IssueClient("tenant-workload")
	if err != nil {
		t.Fatal(err)
	}
	right, err := e.ca.IssueClient(pki.APIServerClientName)
	if err != nil {
		t.Fatal(err)
	}
	for name, hc := range map[string]*http.Client{
		"no client certificate": {Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}},
		"another CA":            pinnedClient(foreign, e.srv.Fingerprint()),
		"another common name":   pinnedClient(wrongName, e.srv.Fingerprint()),
		"wrong fingerprint":     pinnedClient(right, strings.Repeat("0", 64)),
	} {
		t.Run(name, func(t *testing.T) {
			resp, err := hc.Get(e.base + "/logs/t/p/c")
			if err == nil {
				resp.Body.Close()
				t.Fatalf("GET = %s, want a TLS failure", resp.Status)
			}
		})
	}
}

func TestCertificateKeptAcrossRestarts(t *testing.T) {
	ca, err := pki.EnsureServing(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a, err := streams.New(streams.Config{DataDir: dir, ClientCA: ca.CAPEM, Resolver: streamstest.Resolver{}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := streams.New(streams.Config{DataDir: dir, ClientCA: ca.CAPEM, Resolver: streamstest.Resolver{}})
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(a.Fingerprint()) || a.Fingerprint() != b.Fingerprint() {
		t.Errorf("fingerprints %q then %q, want the same 64 hex digits", a.Fingerprint(), b.Fingerprint())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want := api.NodeDaemonEndpoint{Port: int32(ln.Addr().(*net.TCPAddr).Port), CertSHA256: a.Fingerprint()}
	if got := a.Endpoint(ln); got != want {
		t.Errorf("Endpoint = %+v, want %+v", got, want)
	}
	if _, err := streams.New(streams.Config{DataDir: dir, ClientCA: []byte("junk"), Resolver: streamstest.Resolver{}}); err == nil {
		t.Error("New with a CA that is not PEM succeeded")
	}
}

// logLoop prints three lines, then "four" each time
// /tmp/more appears.
var logLoop = []string{"sh", "-c", `echo one; echo two; echo three; while :; do if [ -e /tmp/more ]; then rm /tmp/more; echo four; fi; sleep 0.1; done`}

func TestLogs(t *testing.T) {
	rt := streamstest.StartRunc(t)
	id := rt.RunContainer(t, logLoop...)
	e := start(t, streamstest.Resolver{"acme/web/c": {Runtime: rt.Client, ContainerID: id}})

	// The container writes its first lines right after starting.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := e.get(t, "/logs/acme/web/c")
		if code == http.StatusOK && body == "one\ntwo\nthree\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs = %d %q, want 200 and the three lines", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}

	cases := []struct {
		name, path string
		code       int
		body       string // a regular expression
	}{
		{"only container", "/logs/acme/web", 200, `^one\ntwo\nthree\n$`},
		{"tail", "/logs/acme/web/c?tailLines=2", 200, `^two\nthree\n$`},
		{"tail 0", "/logs/acme/web/c?tailLines=0", 200, `^$`},
		{"timestamps", "/logs/acme/web/c?timestamps=true&tailLines=1", 200, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z three\n$`},
		{"since the future", "/logs/acme/web/c?sinceTime=" + url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339)), 200, `^$`},
		{"since a minute", "/logs/acme/web/c?sinceSeconds=60", 200, `^one\ntwo\nthree\n$`},
		{"bad tail", "/logs/acme/web/c?tailLines=some", 400, `"field":"tailLines"`},
		{"bad follow", "/logs/acme/web/c?follow=maybe", 400, `"field":"follow"`},
		{"both since", "/logs/acme/web/c?sinceSeconds=1&sinceTime=2026-01-01T00:00:00Z", 400, `"field":"sinceSeconds"`},
		{"unknown container", "/logs/acme/web/db", 404, `container \\"db\\"`},
		{"unknown pod", "/logs/acme/api/c", 404, `"reason":"NotFound"`},
		{"previous", "/logs/acme/web/c?previous=true", 501, `"field":"previous"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := e.get(t, tc.path)
			if code != tc.code || !regexp.MustCompile(tc.body).MatchString(body) {
				t.Errorf("GET %s = %d %q, want %d matching %q", tc.path, code, body, tc.code, tc.body)
			}
		})
	}

	t.Run("timestamps are the lines' times", func(t *testing.T) {
		_, body := e.get(t, "/logs/acme/web/c?timestamps=true&tailLines=1")
		ts, _, _ := strings.Cut(body, " ")
		got, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || time.Since(got) > 5*time.Minute || time.Until(got) > time.Minute {
			t.Errorf("timestamp %q (%v), want a time of the last few minutes", ts, err)
		}
	})

	t.Run("follow", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.base+"/logs/acme/web/c?follow=true&tailLines=1", nil)
		resp, err := e.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		if line, err := br.ReadString('\n'); line != "three\n" {
			t.Fatalf("first followed line = %q (%v), want three", line, err)
		}
		// A line written after the request arrives without the stream
		// ending.
		if _, err := rt.Client.ExecSync(ctx, &runtimev1.ExecSyncRequest{Id: id, Command: []string{"touch", "/tmp/more"}, TimeoutSeconds: 10}); err != nil {
			t.Fatal(err)
		}
		if line, err := br.ReadString('\n'); line != "four\n" {
			t.Fatalf("next followed line = %q (%v), want four", line, err)
		}
	})
}

// session is what an exec session sent back.
type session struct {
	stdout, stderr string
	status         streams.ExecStatus
}

// execute runs an exec session over a raw WebSocket: it sends msgs (each
// with its channel byte) and collects the output until the status.
func (e *endpoint) execute(t *testing.T, query string, msgs ...[]byte) session {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, e.base+"/exec/acme/web/c?"+query, &websocket.DialOptions{HTTPClient: e.hc, Subprotocols: []string{streams.Subprotocol}})
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("dial exec?%s: %v %s", query, err, status)
	}
	defer conn.CloseNow()
	if conn.Subprotocol() != streams.Subprotocol {
		t.Errorf("subprotocol %q, want %q", conn.Subprotocol(), streams.Subprotocol)
	}
	for _, m := range msgs {
		if err := conn.Write(ctx, websocket.MessageBinary, m); err != nil {
			t.Fatal(err)
		}
	}
	var s session
	for {
		_, m, err := conn.Read(ctx)
		if err != nil {
			t.Fatalf("exec?%s: read before the status: %v (so far %+v)", query, err, s)
		}
		switch m[0] {
		case streams.ChannelStdout:
			s.stdout += string(m[1:])
		case streams.ChannelStderr:
			s.stderr += string(m[1:])
		case streams.ChannelStatus:
			if err := json.Unmarshal(m[1:], &s.status); err != nil {
				t.Fatalf("status %q: %v", m[1:], err)
			}
			// The server closes normally after the status.
			if _, _, err := conn.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				t.Errorf("after the status: %v, want a normal close", err)
			}
			return s
		default:
			t.Fatalf("message on unknown channel %d", m[0])
		}
	}
}

func msg(channel byte, payload string) []byte { return append([]byte{channel}, payload...) }

func exitCode(s session) int32 {
	if s.status.ExitCode == nil {
		return -1
	}
	return *s.status.ExitCode
}

func TestExec(t *testing.T) {
	rt := streamstest.StartRunc(t)
	id := rt.RunContainer(t, "sleep", "100000")
	e := start(t, streamstest.Resolver{"acme/web/c": {Runtime: rt.Client, ContainerID: id}})

	cmd := func(args ...string) string {
		q := url.Values{"command": args}
		return q.Encode()
	}
	t.Run("stdout stderr and exit code", func(t *testing.T) {
		s := e.execute(t, cmd("sh", "-c", "echo out; echo err >&2; exit 3"))
		if s.stdout != "out\n" || s.stderr != "err\n" || exitCode(s) != 3 {
			t.Errorf("session = %+v (exit %d), want stdout out, stderr err, exit 3", s, exitCode(s))
		}
	})
	t.Run("stdin", func(t *testing.T) {
		s := e.execute(t, cmd("cat")+"&stdin=true", msg(streams.ChannelStdin, "hello\n"), msg(streams.ChannelStdin, "world\n"), msg(streams.ChannelCloseStdin, ""))
		if s.stdout != "hello\nworld\n" || exitCode(s) != 0 {
			t.Errorf("session = %+v, want stdout hello world and exit 0", s)
		}
	})
	t.Run("tty and resize", func(t *testing.T) {
		// The size is applied in order with the input, so it is set by the
		// time read returns.
		s := e.execute(t, cmd("sh", "-c", "read x; stty size; exit 7")+"&stdin=true&tty=true",
			msg(streams.ChannelResize, `{"width":123,"height":45}`), msg(streams.ChannelStdin, "\n"))
		if !strings.Contains(s.stdout, "45 123\r\n") || s.stderr != "" || exitCode(s) != 7 {
			t.Errorf("session = %+v, want stty size 45 123 on the terminal and exit 7", s)
		}
	})
	t.Run("command not found", func(t *testing.T) {
		s := e.execute(t, cmd("/no/such/program"))
		if s.status.ExitCode == nil && s.status.Error == "" {
			t.Errorf("session = %+v, want an exit code or an error", s)
		}
		if exitCode(s) == 0 {
			t.Errorf("session = %+v, want a failure", s)
		}
	})
	t.Run("no command", func(t *testing.T) {
		if code, body := e.get(t, "/exec/acme/web/c"); code != 400 || !strings.Contains(body, `"field":"command"`) {
			t.Errorf("exec without command = %d %s, want 400 naming command", code, body)
		}
	})
	t.Run("no upgrade", func(t *testing.T) {
		if code, _ := e.get(t, "/exec/acme/web/c?command=true"); code != http.StatusUpgradeRequired {
			t.Errorf("exec without a WebSocket upgrade = %d, want 426", code)
		}
	})
	t.Run("not running", func(t *testing.T) {
		if _, err := rt.Client.StopContainer(t.Context(), &runtimev1.StopContainerRequest{Id: id, TimeoutSeconds: 1}); err != nil {
			t.Fatal(err)
		}
		// The plugin's refusal comes as the status, with its class.
		s := e.execute(t, cmd("true"))
		if s.status.ExitCode != nil || s.status.Reason != "PreconditionFailed" || !strings.Contains(s.status.Error, "not running") {
			t.Errorf("exec in a stopped container = %+v, want error PreconditionFailed saying not running", s.status)
		}
	})
}
