package apiserver

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/core/pki"
)

// pods/log and pods/exec are served by the agent of the pod's node: the
// API server authorizes and audits the request like any other, then
// proxies it to the agent's stream endpoint (Node.status.daemonEndpoint)
// over TLS pinned to the agent's certificate fingerprint, presenting its
// own client certificate. Exec is a WebSocket that passes through as it
// is; docs/api.md describes both.

// The query parameters passed on to the agent, per subresource.
var streamParams = map[string][]string{
	"log":  {"follow", "sinceSeconds", "sinceTime", "tailLines", "timestamps", "previous"},
	"exec": {"command", "stdin", "tty"},
}

// agentPaths are the agent's paths for the subresources.
var agentPaths = map[string]string{"log": "/logs/", "exec": "/exec/"}

func isStreamSubresource(k *api.Kind, sub string) bool {
	return k.Resource == "pods" && (sub == "log" || sub == "exec")
}

// streamRequest sets the verb of a pods/log or pods/exec request: reading
// logs is a get (role view may), running a command is a create (edit and
// admin may).
func streamRequest(r *http.Request, req *Request) (*Request, error) {
	switch {
	case req.Subresource == "log" && r.Method == http.MethodGet:
		req.Verb = VerbGet
	case req.Subresource == "exec" && (r.Method == http.MethodGet || r.Method == http.MethodPost):
		req.Verb = VerbCreate
	default:
		return nil, errdefs.New(errdefs.ErrMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path))
	}
	if req.Tenant == "" {
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("pods are tenant-scoped: use /api/v1/tenants/TENANT/pods/%s/%s", req.Name, req.Subresource))
	}
	return req, nil
}

// serveStream proxies an authorized pods/log or pods/exec request to the
// agent of the pod's node.
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, u *User, req *Request) error {
	q := req.Query
	if req.Subresource == "exec" {
		if cmd := q["command"]; len(cmd) == 0 || cmd[0] == "" {
			return errdefs.Field(errdefs.ErrBadRequest, "command", "required: give the program and its arguments as repeated command= parameters")
		}
	}
	ctx := r.Context()
	obj, err := s.get(ctx, u, req)
	if err != nil {
		return err
	}
	pod := obj.(*api.Pod)
	container, err := podContainer(pod, q.Get("container"))
	if err != nil {
		return err
	}
	if pod.Spec.NodeName == "" {
		return errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("pod %q is not running on a node yet", pod.Metadata.Name))
	}
	addr, pin, err := s.agentEndpoint(r, pod.Spec.NodeName)
	if err != nil {
		return err
	}
	if s.cfg.AgentClientCert == nil {
		return errdefs.New(errdefs.ErrUnavailable, "this API server has no client certificate for node agents: logs and exec are off")
	}
	out := url.Values{}
	for _, p := range streamParams[req.Subresource] {
		if v, ok := q[p]; ok {
			out[p] = v
		}
	}
	target := &url.URL{
		Scheme:   "https",
		Host:     addr,
		Path:     agentPaths[req.Subresource] + req.Tenant + "/" + pod.Metadata.Name + "/" + container,
		RawPath:  agentPaths[req.Subresource] + url.PathEscape(req.Tenant) + "/" + url.PathEscape(pod.Metadata.Name) + "/" + url.PathEscape(container),
		RawQuery: out.Encode(),
	}
	tr := &http.Transport{
		TLSClientConfig:       pki.PinnedClientTLS(*s.cfg.AgentClientCert, pin),
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: time.Minute,
	}
	defer tr.CloseIdleConnections()
	node := pod.Spec.NodeName
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL, pr.Out.Host = target, ""
			// The caller's credentials are for the API server only; the
			// agent trusts the API server's certificate, and no browser
			// reaches it.
			for _, h := range []string{"Authorization", "Cookie", "Origin"} {
				pr.Out.Header.Del(h)
			}
		},
		Transport:     tr,
		FlushInterval: -1,
		ModifyResponse: func(resp *http.Response) error {
			// An upgrade is answered by the proxy on the hijacked
			// connection, past the recorder: record it for the audit.
			if rec, ok := w.(*recorder); ok && resp.StatusCode == http.StatusSwitchingProtocols {
				rec.status = resp.StatusCode
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if ctx.Err() != nil {
				return // the caller went away
			}
			writeError(w, fmt.Errorf("%w: cannot reach the agent of node %q at %s: %v", errdefs.ErrUnavailable, node, addr, err))
		},
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	proxy.ServeHTTP(w, r)
	return nil
}

// podContainer returns the container a request names, or the pod's only
// container when it names none.
func podContainer(p *api.Pod, name string) (string, error) {
	var names []string
	for _, c := range p.Spec.Containers {
		names = append(names, c.Name)
	}
	switch {
	case name == "" && len(names) == 1:
		return names[0], nil
	case name == "":
		return "", errdefs.Field(errdefs.ErrBadRequest, "container", fmt.Sprintf("pod %q has %d containers: choose one of %s", p.Metadata.Name, len(names), strings.Join(names, ", ")))
	case !slices.Contains(names, name):
		return "", errdefs.Field(errdefs.ErrBadRequest, "container", fmt.Sprintf("pod %q has no container %q: want one of %s", p.Metadata.Name, name, strings.Join(names, ", ")))
	}
	return name, nil
}

// agentEndpoint returns the HOST:PORT of a node's stream endpoint and the
// fingerprint of its certificate.
func (s *Server) agentEndpoint(r *http.Request, nodeName string) (addr, fingerprint string, err error) {
	nodes, _ := kindForResource("nodes")
	obj, err := s.store.Get(r.Context(), nodes, "", nodeName)
	if errdefs.IsNotFound(err) {
		return "", "", errdefs.New(errdefs.ErrUnavailable, fmt.Sprintf("the pod's node %q is not registered", nodeName))
	}
	if err != nil {
		return "", "", err
	}
	n := obj.(*api.Node)
	ep := n.Status.DaemonEndpoint
	if ep.Port == 0 || ep.CertSHA256 == "" {
		return "", "", errdefs.New(errdefs.ErrUnavailable, fmt.Sprintf("node %q publishes no daemon endpoint (status.daemonEndpoint): its agent is not serving logs and exec", nodeName))
	}
	for _, a := range n.Status.Addresses {
		if a.Type == "InternalIP" && a.Address != "" {
			return net.JoinHostPort(a.Address, strconv.Itoa(int(ep.Port))), ep.CertSHA256, nil
		}
	}
	return "", "", errdefs.New(errdefs.ErrUnavailable, fmt.Sprintf("node %q publishes no InternalIP address (status.addresses)", nodeName))
}
