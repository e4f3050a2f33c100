package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/core/store"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", s.serveReady)
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"version": s.cfg.Version, "apiVersion": api.Version})
	})
	metricsHandler := promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{})
	mux.Handle("GET /metrics", s.clusterAdminOnly("metrics", func(w http.ResponseWriter, r *http.Request) error {
		metricsHandler.ServeHTTP(w, r)
		return nil
	}))
	mux.Handle("GET /api/v1/etcd/snapshot", s.clusterAdminOnly("etcd/snapshot", s.serveSnapshot))
	mux.Handle("POST /api/v1/etcd/compact", s.clusterAdminOnly("etcd/compact", s.serveCompact))
	mux.Handle("/api/v1/", s.authenticated("", s.serveResource))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("no such path %q: the API lives under /api/v1/", r.URL.Path)))
	})
	return mux
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ready(ctx); err != nil {
		writeError(w, fmt.Errorf("%w: store not ready: %v", errdefs.ErrUnavailable, err))
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}

// clusterAdminOnly wraps an operator endpoint: authenticated, cluster-admin
// only, audited.
func (s *Server) clusterAdminOnly(resource string, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return s.authenticated(resource, func(w http.ResponseWriter, r *http.Request, u *User, _ *auditEntry) error {
		if u.Role != api.RoleClusterAdmin {
			return errdefs.New(errdefs.ErrPermissionDenied, fmt.Sprintf("%s may not use %s: cluster admins only", u, resource))
		}
		return h(w, r)
	})
}

// authenticated wraps a handler with what every authenticated request
// gets: the bearer token checked, an audit line and metrics. resource
// names the endpoint in the audit log until the handler knows better; an
// error the handler returns becomes the Status answer.
func (s *Server) authenticated(resource string, h func(http.ResponseWriter, *http.Request, *User, *auditEntry) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w}
		entry := auditEntry{Verb: strings.ToLower(r.Method), Resource: resource}
		start := time.Now()
		defer func() { s.finish(rec, r, &entry, start) }()
		u, err := s.authn.authenticate(r)
		if err == nil {
			entry.user(u)
			err = h(rec, r, u, &entry)
		}
		if err != nil {
			writeError(rec, err)
		}
	})
}

func (s *Server) serveSnapshot(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/octet-stream")
	_, err := store.SaveSnapshot(r.Context(), s.store.Client(), w)
	return err
}

func (s *Server) serveCompact(w http.ResponseWriter, r *http.Request) error {
	rev, err := store.ParseResourceVersion(r.URL.Query().Get("revision"))
	if err != nil {
		return err
	}
	rev, err = s.store.Compact(r.Context(), rev)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]int64{"revision": rev})
	return nil
}

// serveResource is the entry of every /api/v1 resource request.
func (s *Server) serveResource(w http.ResponseWriter, r *http.Request, u *User, entry *auditEntry) error {
	req, err := parseRequest(r)
	if err != nil {
		return err
	}
	entry.request(req)
	if err := authorize(u, req); err != nil {
		return err
	}
	if isStreamSubresource(req.Kind, req.Subresource) {
		return s.serveStream(w, r, u, req)
	}
	if isBindingSubresource(req.Kind, req.Subresource) {
		return s.serveBinding(w, r, req)
	}
	return s.dispatch(w, r, u, req)
}

func (s *Server) dispatch(w http.ResponseWriter, r *http.Request, u *User, req *Request) error {
	ctx := r.Context()
	switch req.Verb {
	case VerbGet:
		obj, err := s.get(ctx, u, req)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, sanitize(obj))
		return nil
	case VerbList:
		opts, err := s.listOptions(u, req)
		if err != nil {
			return err
		}
		list, err := s.store.List(ctx, req.Kind, req.Tenant, opts)
		if err != nil {
			return err
		}
		s.filterList(u, req, list)
		for i, o := range list.Items {
			list.Items[i] = sanitize(o)
		}
		writeJSON(w, http.StatusOK, list)
		return nil
	case VerbWatch:
		return s.watch(w, r, u, req)
	case VerbCreate:
		obj, err := s.decodeBody(r, req)
		if err != nil {
			return err
		}
		out, err := s.create(ctx, u, req, obj)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, out)
		return nil
	case VerbUpdate:
		obj, err := s.decodeBody(r, req)
		if err != nil {
			return err
		}
		out, err := s.update(ctx, u, req, obj)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, sanitize(out))
		return nil
	case VerbDelete:
		out, err := s.delete(ctx, u, req)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, sanitize(out))
		return nil
	}
	return errdefs.New(errdefs.ErrMethodNotAllowed, "unsupported verb")
}

// get reads the object a request names, checking object-level access. A
// missing object that the caller could not see if it existed answers 403.
func (s *Server) get(ctx context.Context, u *User, req *Request) (api.Object, error) {
	if isNodeRef(u, req) {
		if err := s.nodeMayRead(ctx, u, req); err != nil {
			return nil, err
		}
	}
	obj, err := s.store.Get(ctx, req.Kind, req.Tenant, req.Name)
	if needsObjectCheck(u, req) {
		if errdefs.IsNotFound(err) {
			if aerr := authorizeObject(u, req, nil); aerr != nil {
				return nil, aerr
			}
			return nil, err
		}
		if err == nil {
			if err := authorizeObject(u, req, obj); err != nil {
				return nil, err
			}
		}
	}
	return obj, err
}

// decodeBody reads and strictly decodes a request body as the request's
// kind, taking the tenant and name from the URL.
func (s *Server) decodeBody(r *http.Request, req *Request) (api.Object, error) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errdefs.New(errdefs.ErrTooLarge, fmt.Sprintf("request body is over the limit of %d bytes", MaxBodyBytes))
		}
		return nil, errdefs.New(errdefs.ErrBadRequest, "reading the request body: "+err.Error())
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil, errdefs.New(errdefs.ErrBadRequest, "empty request body: send the object as JSON or YAML")
	}
	obj, err := api.DecodeAs(body, req.Kind)
	if err != nil {
		return nil, err
	}
	m := obj.GetObjectMeta()
	if req.Kind.TenantScoped {
		switch m.Tenant {
		case "":
			m.Tenant = req.Tenant
		case req.Tenant:
		default:
			return nil, errdefs.Field(errdefs.ErrBadRequest, "metadata.tenant", fmt.Sprintf("%q does not match the tenant %q in the URL", m.Tenant, req.Tenant))
		}
	}
	if req.Name != "" {
		switch m.Name {
		case "":
			m.Name = req.Name
		case req.Name:
		default:
			return nil, errdefs.Field(errdefs.ErrBadRequest, "metadata.name", fmt.Sprintf("%q does not match the name %q in the URL", m.Name, req.Name))
		}
	}
	return obj, nil
}

// listOptions parses a list or watch request's selectors and paging.
func (s *Server) listOptions(u *User, req *Request) (store.ListOptions, error) {
	var opts store.ListOptions
	var err error
	q := req.Query
	if opts.Labels, err = api.ParseSelector(q.Get("labelSelector")); err != nil {
		return opts, errdefs.Field(errdefs.ErrBadRequest, "labelSelector", err.Error())
	}
	fs := q.Get("fieldSelector")
	if field, value := scopeList(u, req); field != "" {
		if fs != "" {
			fs += ","
		}
		fs += field + "=" + value
	}
	if opts.Fields, err = api.ParseFieldSelector(fs); err != nil {
		return opts, errdefs.Field(errdefs.ErrBadRequest, "fieldSelector", err.Error())
	}
	known := req.Kind.FieldNames()
	for _, r := range opts.Fields.Requirements() {
		if !slices.Contains(known, r.Field) {
			return opts, errdefs.Field(errdefs.ErrBadRequest, "fieldSelector", fmt.Sprintf("%s cannot be selected by %q: want one of %s", req.Kind.Resource, r.Field, strings.Join(known, ", ")))
		}
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.ParseInt(l, 10, 64)
		if err != nil || n < 0 {
			return opts, errdefs.Field(errdefs.ErrBadRequest, "limit", fmt.Sprintf("invalid limit %q: want a whole number, 0 for all", l))
		}
		opts.Limit = n
	}
	opts.Continue = q.Get("continue")
	return opts, nil
}

// filterList drops items the caller may not see object by object; no
// current rule needs it beyond scopeList, but node pod lists are checked
// again here as defence in depth.
func (s *Server) filterList(u *User, req *Request, list *api.List) {
	if u.Role != api.RoleNode || req.Kind.Resource != "pods" {
		return
	}
	kept := list.Items[:0]
	for _, o := range list.Items {
		if authorizeObject(u, &Request{Verb: VerbGet, Kind: req.Kind}, o) == nil {
			kept = append(kept, o)
		}
	}
	list.Items = kept
}

// watch streams events as newline-delimited JSON until the client goes
// away, the server stops or timeoutSeconds passes.
func (s *Server) watch(w http.ResponseWriter, r *http.Request, u *User, req *Request) error {
	opts, err := s.listOptions(u, req)
	if err != nil {
		return err
	}
	if req.Name != "" {
		// Watching one object is watching its name.
		if opts.Fields, err = api.ParseFieldSelector(joinSelector(opts.Fields.String(), "metadata.name="+req.Name)); err != nil {
			return errdefs.Field(errdefs.ErrBadRequest, "fieldSelector", err.Error())
		}
		if needsObjectCheck(u, req) {
			if _, err := s.get(r.Context(), u, &Request{Verb: VerbGet, Kind: req.Kind, Tenant: req.Tenant, Name: req.Name}); err != nil {
				return err
			}
		}
	}
	rv, err := store.ParseResourceVersion(req.Query.Get("resourceVersion"))
	if err != nil {
		return err
	}
	ctx := r.Context()
	if t := req.Query.Get("timeoutSeconds"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			return errdefs.Field(errdefs.ErrBadRequest, "timeoutSeconds", fmt.Sprintf("invalid timeoutSeconds %q: want a whole number", t))
		}
		if n > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Duration(n)*time.Second)
			defer cancel()
		}
	}
	ch, err := s.store.Watch(ctx, req.Kind, req.Tenant, store.WatchOptions{
		ResourceVersion: rv,
		Labels:          opts.Labels,
		Fields:          opts.Fields,
		Bookmarks:       req.Query.Get("allowWatchBookmarks") == "true",
	})
	if err != nil {
		return err
	}
	s.metrics.watchers.WithLabelValues(req.Kind.Resource).Inc()
	defer s.metrics.watchers.WithLabelValues(req.Kind.Resource).Dec()

	w.Header().Set("Content-Type", "application/json;stream=watch")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	// The response writer buffers; lines are built in one reused slice.
	var line []byte
	checkNode := u.Role == api.RoleNode && req.Kind.Resource == "pods"
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return nil
			}
			if checkNode && ev.Type != api.Error && ev.Type != api.Bookmark && authorizeObject(u, &Request{Verb: VerbGet, Kind: req.Kind}, ev.Object) != nil {
				continue
			}
			var err error
			if line, err = appendEvent(line[:0], ev); err != nil {
				return err
			}
			if _, err := w.Write(line); err != nil {
				return nil // the client went away
			}
			// Flush when nothing else is queued, so that bursts go out
			// in one write and single events without delay.
			if len(ch) == 0 && flusher != nil {
				flusher.Flush()
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// appendEvent appends one watch event as a line of JSON to b, using the
// event's shared encoding when the object needs no sanitizing.
func appendEvent(b []byte, ev api.WatchEvent) ([]byte, error) {
	if ev.Encoded != nil && sanitize(ev.Object) == ev.Object {
		b = append(b, `{"type":"`...)
		b = append(b, ev.Type...)
		b = append(b, `","object":`...)
		b = append(b, ev.Encoded...)
		return append(b, "}\n"...), nil
	}
	if ev.Type != api.Error {
		ev.Object = sanitize(ev.Object)
	}
	js, err := json.Marshal(ev)
	if err != nil {
		return b, err
	}
	return append(append(b, js...), '\n'), nil
}

func joinSelector(a, b string) string {
	if a == "" {
		return b
	}
	return a + "," + b
}

// sanitize removes what the API never returns: a token's secret hash.
func sanitize(obj api.Object) api.Object {
	if t, ok := obj.(*api.Token); ok && t.Status.SecretHash != "" {
		c := *t
		c.Status.SecretHash = ""
		return &c
	}
	return obj
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, fmt.Errorf("encode answer: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, err error) {
	st := store.StatusFor(err)
	if st.Code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="paddock"`)
	}
	b, _ := json.Marshal(st)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(st.Code)
	_, _ = w.Write(append(b, '\n'))
}
