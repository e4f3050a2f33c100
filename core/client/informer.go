package client

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
)

// Handler is told about changes an Informer sees. Its functions run one
// at a time, in the order of the changes, on the informer's goroutine:
// they must not block (queue a key and return).
type Handler struct {
	OnAdd    func(obj api.Object)
	OnUpdate func(old, obj api.Object)
	OnDelete func(obj api.Object)
}

// Informer keeps a local copy of one kind's objects — in one tenant or
// all, narrowed by selectors — in step with the server: it lists, then
// watches from the list's revision, and lists again (reporting the
// difference as changes) when the watch history was compacted or the
// stream broke. Reads of the copy never reach the server.
type Informer struct {
	c      *Client
	kind   *api.Kind
	tenant string
	opts   ListOptions
	log    *slog.Logger

	mu       sync.RWMutex
	items    map[string]api.Object // by Key
	handlers []Handler
	synced   chan struct{}
	syncOnce sync.Once
	rv       string
}

// NewInformer returns an informer of kind k in tenant ("" = every tenant
// the caller may see) narrowed by opts' selectors.
func NewInformer(c *Client, k *api.Kind, tenant string, opts ListOptions, log *slog.Logger) *Informer {
	if log == nil {
		log = slog.Default()
	}
	opts.Limit, opts.Continue = 0, ""
	return &Informer{c: c, kind: k, tenant: tenant, opts: opts, log: log.With("informer", k.Kind), items: map[string]api.Object{}, synced: make(chan struct{})}
}

// Key is the key an informer files obj under: "tenant/name", or "name"
// for cluster-scoped objects.
func Key(obj api.Object) string {
	m := obj.GetObjectMeta()
	if m.Tenant == "" {
		return m.Name
	}
	return m.Tenant + "/" + m.Name
}

// AddHandler registers h; add handlers before Run.
func (i *Informer) AddHandler(h Handler) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.handlers = append(i.handlers, h)
}

// Get returns the local copy of an object (do not modify it).
func (i *Informer) Get(key string) (api.Object, bool) {
	i.mu.RLock()
	defer i.mu.RUnlock()
	o, ok := i.items[key]
	return o, ok
}

// List returns the local copies (do not modify them).
func (i *Informer) List() []api.Object {
	i.mu.RLock()
	defer i.mu.RUnlock()
	out := make([]api.Object, 0, len(i.items))
	for _, o := range i.items {
		out = append(out, o)
	}
	return out
}

// Synced is closed once the first list is in the local copy.
func (i *Informer) Synced() <-chan struct{} { return i.synced }

// WaitSynced waits for the first list.
func (i *Informer) WaitSynced(ctx context.Context) error {
	select {
	case <-i.synced:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run lists and watches until ctx ends, retrying failures with back-off.
func (i *Informer) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := i.listAndWatch(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			backoff = 100 * time.Millisecond
			continue
		}
		i.log.Warn("list and watch failed; retrying", "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// listAndWatch lists (unless a watch can resume) and watches until the
// stream ends. A nil error means the stream ended cleanly and may resume.
func (i *Informer) listAndWatch(ctx context.Context) error {
	if i.rv == "" {
		list, err := i.c.ListAll(ctx, i.kind, i.tenant, i.opts)
		if err != nil {
			return err
		}
		i.replace(list.Items)
		i.rv = list.Metadata.ResourceVersion
		i.syncOnce.Do(func() { close(i.synced) })
	}
	w, err := i.c.Watch(ctx, i.kind, i.tenant, WatchOptions{ListOptions: i.opts, ResourceVersion: i.rv, Bookmarks: true, TimeoutSeconds: 300})
	if err != nil {
		if errdefs.IsGone(err) {
			i.rv = ""
		}
		return err
	}
	defer w.Stop()
	for ev := range w.Events() {
		switch ev.Type {
		case api.Added, api.Modified:
			i.upsert(ev.Object)
		case api.Deleted:
			i.remove(ev.Object)
		case api.Bookmark:
		case api.Error:
			if st, ok := ev.Object.(*api.Status); ok && st.Code == 410 {
				i.rv = ""
				return nil // relist
			}
			return errors.New("watch error event")
		}
		if ev.Type != api.Error {
			i.rv = ev.Object.GetObjectMeta().ResourceVersion
		}
	}
	if err := w.Err(); err != nil {
		return err
	}
	return nil
}

// replace makes the local copy equal to items, telling handlers the
// difference.
func (i *Informer) replace(items []api.Object) {
	fresh := make(map[string]api.Object, len(items))
	for _, o := range items {
		fresh[Key(o)] = o
	}
	i.mu.Lock()
	old := i.items
	i.items = fresh
	handlers := i.handlers
	i.mu.Unlock()
	for k, o := range old {
		if _, ok := fresh[k]; !ok {
			for _, h := range handlers {
				if h.OnDelete != nil {
					h.OnDelete(o)
				}
			}
		}
	}
	for k, o := range fresh {
		prev, had := old[k]
		for _, h := range handlers {
			switch {
			case !had && h.OnAdd != nil:
				h.OnAdd(o)
			case had && h.OnUpdate != nil && prev.GetObjectMeta().ResourceVersion != o.GetObjectMeta().ResourceVersion:
				h.OnUpdate(prev, o)
			}
		}
	}
}

func (i *Informer) upsert(o api.Object) {
	k := Key(o)
	i.mu.Lock()
	prev, had := i.items[k]
	i.items[k] = o
	handlers := i.handlers
	i.mu.Unlock()
	for _, h := range handlers {
		if had && h.OnUpdate != nil {
			h.OnUpdate(prev, o)
		} else if !had && h.OnAdd != nil {
			h.OnAdd(o)
		}
	}
}

func (i *Informer) remove(o api.Object) {
	k := Key(o)
	i.mu.Lock()
	prev, had := i.items[k]
	delete(i.items, k)
	handlers := i.handlers
	i.mu.Unlock()
	if !had {
		prev = o
	}
	for _, h := range handlers {
		if h.OnDelete != nil {
			h.OnDelete(prev)
		}
	}
}
