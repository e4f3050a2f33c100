package apiserver

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// auditEntry is one line of the audit log.
type auditEntry struct {
	Time        string `json:"time"`
	User        string `json:"user,omitempty"`
	Role        string `json:"role,omitempty"`
	UserTenant  string `json:"userTenant,omitempty"`
	Node        string `json:"node,omitempty"`
	Verb        string `json:"verb"`
	Resource    string `json:"resource,omitempty"`
	Subresource string `json:"subresource,omitempty"`
	Tenant      string `json:"tenant,omitempty"`
	Name        string `json:"name,omitempty"`
	Status      int    `json:"status"`
	LatencyMS   string `json:"latencyMs"`
	SourceIP    string `json:"sourceIP,omitempty"`
	Path        string `json:"path,omitempty"`
	// Command is the command of a pods/exec request.
	Command []string `json:"command,omitempty"`
}

func (e *auditEntry) user(u *User) {
	e.User, e.Role, e.UserTenant, e.Node = u.Name, string(u.Role), u.Tenant, u.Node
}

func (e *auditEntry) request(r *Request) {
	e.Verb, e.Resource, e.Subresource, e.Tenant, e.Name = string(r.Verb), r.Kind.Resource, r.Subresource, r.Tenant, r.Name
	if r.Subresource == "exec" {
		e.Command = r.Query["command"]
	}
}

// auditLog writes one JSON line per request. Lines are written whole under
// a lock, so concurrent requests never interleave.
type auditLog struct {
	mu sync.Mutex
	w  io.Writer
}

func newAuditLog(w io.Writer) *auditLog { return &auditLog{w: w} }

func (a *auditLog) write(e *auditEntry) {
	if a.w == nil {
		return
	}
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	b = append(b, '\n')
	a.mu.Lock()
	_, _ = a.w.Write(b)
	a.mu.Unlock()
}

func (a *auditLog) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.w.(io.Closer); ok {
		_ = c.Close()
	}
	a.w = nil
}

// finish records a finished request in the audit log and the metrics.
func (s *Server) finish(rec *recorder, r *http.Request, e *auditEntry, start time.Time) {
	took := time.Since(start)
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	e.Time = start.UTC().Format(time.RFC3339Nano)
	e.Status = status
	e.LatencyMS = strconv.FormatFloat(float64(took.Microseconds())/1000, 'f', 3, 64)
	e.Path = r.URL.Path
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		e.SourceIP = host
	}
	s.audit.write(e)
	resource := e.Resource
	if resource == "" {
		resource = "unknown"
	}
	s.metrics.requests.WithLabelValues(e.Verb, resource, strconv.Itoa(status)).Inc()
	if e.Verb != string(VerbWatch) {
		s.metrics.latency.WithLabelValues(e.Verb, resource).Observe(took.Seconds())
	}
}

// recorder remembers the status code written through it.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Flush implements http.Flusher for watch streams.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
