// Package client is the Go client of Paddock's API. The CLI, the node
// agent, the scheduler, the controllers and the conformance suites reach
// the control plane only through it.
//
// A Client is safe for concurrent use and keeps HTTP/2 connections open
// between calls. Errors from the server come back as *errdefs.Error values
// of the matching class (errdefs.IsNotFound(err) and friends work).
package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
)

// Client talks to one API server with one credential.
type Client struct {
	base   string
	token  string
	tenant string
	hc     *http.Client
}

// New returns a client for cfg.
func New(cfg *Config) (*Client, error) {
	tr := &http.Transport{
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	if strings.HasPrefix(cfg.Server, "https://") {
		pool := x509.NewCertPool()
		if cfg.CertificateAuthority != "" && !pool.AppendCertsFromPEM([]byte(cfg.CertificateAuthority)) {
			return nil, errdefs.Field(errdefs.ErrBadRequest, "certificateAuthority", "no PEM certificate found")
		}
		if cfg.CertificateAuthority == "" {
			var err error
			if pool, err = x509.SystemCertPool(); err != nil {
				return nil, fmt.Errorf("system certificates: %w", err)
			}
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &Client{
		base:   strings.TrimSuffix(cfg.Server, "/"),
		token:  cfg.Token,
		tenant: cfg.Tenant,
		hc:     &http.Client{Transport: tr},
	}, nil
}

// Tenant returns the configuration's default tenant.
func (c *Client) Tenant() string { return c.tenant }

// Server returns the API server's base URL.
func (c *Client) Server() string { return c.base }

// Path returns the URL path of a kind's collection or, with a name, one
// object; tenant is ignored for cluster-scoped kinds and, when empty for a
// tenant-scoped kind, means every tenant (lists and watches only).
func Path(k *api.Kind, tenant, name string) string {
	p := "/api/v1/" + k.Resource
	if k.TenantScoped && tenant != "" {
		p = "/api/v1/tenants/" + url.PathEscape(tenant) + "/" + k.Resource
	}
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p
}

// Do sends a request and returns the response of a 2xx answer; any other
// answer becomes an error decoded from the server's Status.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body []byte) (*http.Response, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: cannot reach the API server at %s: %v", errdefs.ErrUnavailable, c.base, unwrapURLError(err))
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// decodeError turns an error answer into an *errdefs.Error.
func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var st api.Status
	if json.Unmarshal(b, &st) != nil || st.Message == "" {
		msg := strings.TrimSpace(string(b))
		if msg == "" {
			msg = resp.Status
		}
		return &errdefs.Error{Class: errdefs.FromHTTP(resp.StatusCode, ""), Message: msg}
	}
	return &errdefs.Error{Class: errdefs.FromHTTP(resp.StatusCode, st.Reason), Field: st.Field, Message: strings.TrimPrefix(st.Message, st.Field+": ")}
}

// doObject sends obj (or nothing) and decodes the answer as kind k.
func (c *Client) doObject(ctx context.Context, method, path string, query url.Values, k *api.Kind, obj api.Object) (api.Object, error) {
	var body []byte
	if obj != nil {
		var err error
		if body, err = json.Marshal(obj); err != nil {
			return nil, err
		}
	}
	b, err := c.doBody(ctx, method, path, query, body)
	if err != nil {
		return nil, err
	}
	return api.DecodeStored(k, b)
}

// doBody sends a request and returns the body of a 2xx answer.
func (c *Client) doBody(ctx context.Context, method, path string, query url.Values, body []byte) ([]byte, error) {
	resp, err := c.Do(ctx, method, path, query, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%w: reading the answer: %v", errdefs.ErrUnavailable, err)
	}
	return b, nil
}

func kindOf(obj api.Object) (*api.Kind, error) {
	k, ok := api.KindOf(obj)
	if !ok {
		return nil, fmt.Errorf("client: unknown object type %T", obj)
	}
	return k, nil
}

// Create creates obj in its tenant (metadata.tenant, else the client's
// default tenant) and returns it as stored.
func (c *Client) Create(ctx context.Context, obj api.Object) (api.Object, error) {
	k, err := kindOf(obj)
	if err != nil {
		return nil, err
	}
	tenant := c.tenantOf(k, obj)
	return c.doObject(ctx, http.MethodPost, Path(k, tenant, ""), nil, k, obj)
}

func (c *Client) tenantOf(k *api.Kind, obj api.Object) string {
	m := obj.GetObjectMeta()
	if k.TenantScoped && m.Tenant == "" {
		m.Tenant = c.tenant
	}
	return m.Tenant
}

// Get reads one object.
func (c *Client) Get(ctx context.Context, k *api.Kind, tenant, name string) (api.Object, error) {
	return c.doObject(ctx, http.MethodGet, Path(k, tenant, name), nil, k, nil)
}

// Update replaces obj. With metadata.resourceVersion set it is a
// compare-and-swap (errdefs.ErrConflict when stale); without, the last
// write wins.
func (c *Client) Update(ctx context.Context, obj api.Object) (api.Object, error) {
	k, err := kindOf(obj)
	if err != nil {
		return nil, err
	}
	m := obj.GetObjectMeta()
	return c.doObject(ctx, http.MethodPut, Path(k, c.tenantOf(k, obj), m.Name), nil, k, obj)
}

// UpdateStatus replaces obj's status through the /status subresource.
func (c *Client) UpdateStatus(ctx context.Context, obj api.Object) (api.Object, error) {
	k, err := kindOf(obj)
	if err != nil {
		return nil, err
	}
	m := obj.GetObjectMeta()
	return c.doObject(ctx, http.MethodPut, Path(k, c.tenantOf(k, obj), m.Name)+"/status", nil, k, obj)
}

// Delete deletes one object and returns it as it was — or, for a pod
// deleted gracefully, as it is now: terminating, with a deletionTimestamp.
func (c *Client) Delete(ctx context.Context, k *api.Kind, tenant, name string) (api.Object, error) {
	return c.DeleteWith(ctx, k, tenant, name, DeleteOptions{})
}

// DeleteOptions tunes a delete.
type DeleteOptions struct {
	// GracePeriodSeconds overrides a pod's termination grace period; 0
	// removes it at once without waiting for its node.
	GracePeriodSeconds *int64
}

// DeleteWith deletes one object with options.
func (c *Client) DeleteWith(ctx context.Context, k *api.Kind, tenant, name string, opts DeleteOptions) (api.Object, error) {
	var q url.Values
	if opts.GracePeriodSeconds != nil {
		q = url.Values{"gracePeriodSeconds": {strconv.FormatInt(*opts.GracePeriodSeconds, 10)}}
	}
	return c.doObject(ctx, http.MethodDelete, Path(k, tenant, name), q, k, nil)
}

// ListOptions narrows a list or watch.
type ListOptions struct {
	LabelSelector string
	FieldSelector string
	Limit         int64
	Continue      string
}

func (o ListOptions) query() url.Values {
	q := url.Values{}
	if o.LabelSelector != "" {
		q.Set("labelSelector", o.LabelSelector)
	}
	if o.FieldSelector != "" {
		q.Set("fieldSelector", o.FieldSelector)
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.FormatInt(o.Limit, 10))
	}
	if o.Continue != "" {
		q.Set("continue", o.Continue)
	}
	return q
}

// List reads one page of a kind's objects in a tenant (every tenant when
// tenant is empty and the caller may see them).
func (c *Client) List(ctx context.Context, k *api.Kind, tenant string, opts ListOptions) (*api.List, error) {
	b, err := c.doBody(ctx, http.MethodGet, Path(k, tenant, ""), opts.query(), nil)
	if err != nil {
		return nil, err
	}
	return api.DecodeList(k, b)
}

// ListAll reads every page of a list.
func (c *Client) ListAll(ctx context.Context, k *api.Kind, tenant string, opts ListOptions) (*api.List, error) {
	var all *api.List
	for {
		page, err := c.List(ctx, k, tenant, opts)
		if err != nil {
			return nil, err
		}
		if all == nil {
			all = page
		} else {
			all.Items = append(all.Items, page.Items...)
		}
		if page.Metadata.Continue == "" {
			all.Metadata.Continue = ""
			return all, nil
		}
		opts.Continue = page.Metadata.Continue
	}
}

// WatchOptions says what to watch from where.
type WatchOptions struct {
	ListOptions
	// Name watches one object.
	Name string
	// ResourceVersion: deliver events after it ("" = from now).
	ResourceVersion string
	// Bookmarks asks for periodic BOOKMARK events.
	Bookmarks bool
	// TimeoutSeconds ends the watch on the server after that long.
	TimeoutSeconds int
}

// Watcher is an open watch stream.
type Watcher struct {
	events chan api.WatchEvent
	cancel context.CancelFunc
	err    error
	done   chan struct{}
}

// Events returns the stream's events. The channel is closed when the watch
// ends; Err then says why.
func (w *Watcher) Events() <-chan api.WatchEvent { return w.events }

// Stop ends the watch.
func (w *Watcher) Stop() { w.cancel(); <-w.done }

// Err returns why the stream ended (nil when it was stopped or the server
// closed it cleanly). It is valid once Events is closed.
func (w *Watcher) Err() error { return w.err }

// Watch opens a watch stream. A resourceVersion that has been compacted
// fails with errdefs.ErrGone (or, if compacted while streaming, the stream
// delivers an ERROR event with code 410).
func (c *Client) Watch(ctx context.Context, k *api.Kind, tenant string, opts WatchOptions) (*Watcher, error) {
	q := opts.query()
	q.Set("watch", "true")
	if opts.ResourceVersion != "" {
		q.Set("resourceVersion", opts.ResourceVersion)
	}
	if opts.Bookmarks {
		q.Set("allowWatchBookmarks", "true")
	}
	if opts.TimeoutSeconds > 0 {
		q.Set("timeoutSeconds", strconv.Itoa(opts.TimeoutSeconds))
	}
	ctx, cancel := context.WithCancel(ctx)
	resp, err := c.Do(ctx, http.MethodGet, Path(k, tenant, opts.Name), q, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	w := &Watcher{events: make(chan api.WatchEvent, 64), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer close(w.events)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 4<<10), 8<<20) // grows to the longest line
		for sc.Scan() {
			ev, err := api.DecodeWatchEvent(k, sc.Bytes())
			if err != nil {
				w.err = err
				return
			}
			select {
			case w.events <- ev:
			case <-ctx.Done():
				return
			}
		}
		if err := sc.Err(); err != nil && ctx.Err() == nil {
			w.err = fmt.Errorf("%w: watch stream broke: %v", errdefs.ErrUnavailable, err)
		}
	}()
	return w, nil
}

// Typed helpers for callers that know the Go type.

// GetAs reads one object as T.
func GetAs[T api.Object](ctx context.Context, c *Client, tenant, name string) (T, error) {
	var zero T
	k, err := kindOf(zero)
	if err != nil {
		return zero, err
	}
	o, err := c.Get(ctx, k, tenant, name)
	if err != nil {
		return zero, err
	}
	return o.(T), nil
}
