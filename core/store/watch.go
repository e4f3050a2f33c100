package store

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// WatchOptions says where a watch starts and what it sees.
type WatchOptions struct {
	// ResourceVersion: events after this revision are delivered. 0 starts
	// at the current revision.
	ResourceVersion int64
	Labels          api.Selector
	Fields          api.FieldSelector
	// Bookmarks asks for BOOKMARK events carrying the current revision
	// while nothing else happens, so a client can resume from a recent one.
	Bookmarks bool
}

// watchBuffer is how many events wait for a slow consumer.
const watchBuffer = 128

// Watch streams changes to a kind's objects in a tenant (every tenant when
// tenant is empty). A modification that makes an object match the
// selectors arrives as ADDED, one that makes it stop matching as DELETED.
//
// Starting from a compacted revision fails with errdefs.ErrGone; if the
// history is compacted while the watch runs, the stream ends with an ERROR
// event whose Status has code 410. The channel is closed when ctx ends or
// the watch fails.
func (s *Store) Watch(ctx context.Context, k *api.Kind, tenant string, opts WatchOptions) (<-chan api.WatchEvent, error) {
	if s.fan != nil {
		ch, ok, err := s.sharedWatch(ctx, k, tenant, opts)
		if err != nil || ok {
			return ch, err
		}
	}
	prefix := s.Prefix(k, tenant)
	if opts.ResourceVersion > 0 {
		// Fail early, before the caller has answered 200, when the
		// revision is gone.
		_, err := s.cli.Get(ctx, prefix, clientv3.WithRev(opts.ResourceVersion), clientv3.WithKeysOnly(), clientv3.WithLimit(1))
		if err != nil && !errors.Is(err, rpctypes.ErrFutureRev) {
			return nil, etcdError(err)
		}
	}
	wopts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithCreatedNotify()}
	if opts.ResourceVersion > 0 {
		wopts = append(wopts, clientv3.WithRev(opts.ResourceVersion+1))
	}
	if opts.Bookmarks {
		wopts = append(wopts, clientv3.WithProgressNotify())
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := s.cli.Watch(wctx, prefix, wopts...)

	// Wait for the created notification so that events written after
	// Watch returns are never missed.
	select {
	case resp, ok := <-wch:
		if !ok {
			cancel()
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			// The client closed the channel without an answer: it
			// is closed itself.
			return nil, errdefs.New(errdefs.ErrUnavailable, "etcd ended the watch before it started: the store's client is closed")
		}
		if err := watchRespError(resp); err != nil {
			cancel()
			return nil, err
		}
	case <-ctx.Done():
		cancel()
		return nil, ctx.Err()
	}

	out := make(chan api.WatchEvent, watchBuffer)
	go func() {
		defer close(out)
		defer cancel()
		w := watcher{k: k, opts: opts, out: out, ctx: ctx}
		for resp := range wch {
			if err := watchRespError(resp); err != nil {
				w.send(api.WatchEvent{Type: api.Error, Object: StatusFor(err)})
				return
			}
			if resp.IsProgressNotify() {
				if opts.Bookmarks && !w.bookmark(resp.Header.Revision) {
					return
				}
				continue
			}
			for _, ev := range resp.Events {
				if !w.handle(ev) {
					return
				}
			}
		}
	}()
	return out, nil
}

func watchRespError(resp clientv3.WatchResponse) error {
	if resp.CompactRevision != 0 {
		return errdefs.New(errdefs.ErrGone, "the requested resourceVersion has been compacted (oldest available: "+strconv.FormatInt(resp.CompactRevision, 10)+"): list again and watch from the list's resourceVersion")
	}
	if err := resp.Err(); err != nil {
		return etcdError(err)
	}
	return nil
}

// StatusFor returns the API Status describing err.
func StatusFor(err error) *api.Status {
	code, reason := errdefs.HTTPStatus(err)
	msg := err.Error()
	if code == http.StatusInternalServerError && !errors.Is(err, errdefs.ErrInternal) {
		msg = "internal error: " + msg
	}
	return &api.Status{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Status"},
		Code:     code,
		Reason:   reason,
		Message:  msg,
		Field:    errdefs.FieldOf(err),
	}
}

type watcher struct {
	ctx  context.Context
	k    *api.Kind
	opts WatchOptions
	out  chan<- api.WatchEvent
}

func (w *watcher) send(ev api.WatchEvent) bool {
	select {
	case w.out <- ev:
		return true
	case <-w.ctx.Done():
		return false
	}
}

func (w *watcher) bookmark(rev int64) bool {
	obj := w.k.New()
	obj.GetObjectMeta().ResourceVersion = strconv.FormatInt(rev, 10)
	return w.send(api.WatchEvent{Type: api.Bookmark, Object: obj})
}

// handle turns one etcd event into at most one watch event.
func (w *watcher) handle(ev *clientv3.Event) bool {
	if ev.Type == mvccpb.DELETE {
		prev, ok := w.object(ev.PrevKv)
		if !ok {
			return true
		}
		prev.GetObjectMeta().ResourceVersion = strconv.FormatInt(ev.Kv.ModRevision, 10)
		return w.send(api.WatchEvent{Type: api.Deleted, Object: prev})
	}
	cur, curOK := w.object(ev.Kv)
	if cur == nil {
		return true
	}
	prevOK := false
	if !ev.IsCreate() {
		if w.opts.Labels.Empty() && w.opts.Fields.Empty() {
			prevOK = true // without selectors the previous version matched too
		} else {
			_, prevOK = w.object(ev.PrevKv)
		}
	}
	switch {
	case curOK && prevOK:
		return w.send(api.WatchEvent{Type: api.Modified, Object: cur})
	case curOK:
		return w.send(api.WatchEvent{Type: api.Added, Object: cur})
	case prevOK:
		// It stopped matching: to this watcher it is gone.
		return w.send(api.WatchEvent{Type: api.Deleted, Object: cur})
	}
	return true
}

// object decodes kv and reports whether it matches the selectors. It
// returns the object even when it does not match, and nil when kv holds
// none.
func (w *watcher) object(kv *mvccpb.KeyValue) (api.Object, bool) {
	if kv == nil || len(kv.Value) == 0 {
		return nil, false
	}
	obj, err := decode(w.k, kv)
	if err != nil {
		return nil, false
	}
	return obj, matches(w.k, obj, w.opts.Labels, w.opts.Fields)
}
