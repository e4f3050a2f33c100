package store

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Shared watches.
//
// Without sharing, every API watch is an etcd watch of its own and every
// event is decoded and encoded once per watcher. With ShareWatches, a
// Store keeps one etcd watch per kind (a feed) over every tenant, decodes
// each event once, encodes it once, and hands it to all the watchers whose
// tenant and selectors it concerns. A feed keeps its last ringSize events so
// that a watcher resuming from a recent resourceVersion is served from
// memory; older resourceVersions fall back to an etcd watch of their own,
// which also reports compaction.

// ringSize is how many recent events a feed keeps for resuming watchers.
const ringSize = 4096

// subscriberBuffer is how many events may wait for one watcher before it
// is cut off as too slow (its client then resumes from the last
// resourceVersion it saw).
const subscriberBuffer = 128

// fanout holds the feeds of a Store.
type fanout struct {
	store *Store
	ctx   context.Context
	log   *slog.Logger
	mu    sync.Mutex
	feeds map[*api.Kind]*feed
}

// ShareWatches makes Watch share one etcd watch per kind among all
// watchers until ctx ends. Call it once, before serving watches.
func (s *Store) ShareWatches(ctx context.Context, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s.fan = &fanout{store: s, ctx: ctx, log: log, feeds: map[*api.Kind]*feed{}}
}

// feed is one shared etcd watch of a kind.
type feed struct {
	s *Store
	k *api.Kind

	mu   sync.Mutex
	subs map[*subscriber]struct{}
	ring []*feedEvent
	// ringFrom is the revision after which ring holds every event.
	ringFrom int64
	// rev is the last revision the feed has seen.
	rev  int64
	dead bool
}

// feedEvent is one change, decoded once.
type feedEvent struct {
	rev    int64
	tenant string
	cur    api.Object // nil for a delete
	prev   api.Object // nil for a create
	once   sync.Once
	curJS  []byte
	goneJS []byte // the object as a DELETED event carries it
	gone   api.Object
}

// encoded returns the JSON of the current object and of the object as a
// DELETED event shows it (the last version at the deletion's revision).
func (e *feedEvent) encoded() (cur []byte, gone api.Object, goneJS []byte) {
	e.once.Do(func() {
		if e.cur != nil {
			e.curJS, _ = json.Marshal(e.cur)
		}
		src := e.prev
		if e.cur != nil {
			src = e.cur
		}
		if src != nil {
			e.gone = api.Clone(src)
			e.gone.GetObjectMeta().ResourceVersion = strconv.FormatInt(e.rev, 10)
			e.goneJS, _ = json.Marshal(e.gone)
		}
	})
	return e.curJS, e.gone, e.goneJS
}

type subscriber struct {
	tenant string
	opts   WatchOptions
	from   int64 // deliver events after this revision
	ch     chan api.WatchEvent
	closed bool
}

// sharedWatch serves a watch from the kind's feed. It reports false when
// the feed cannot serve it (a revision older than the feed remembers), and
// the caller then uses an etcd watch of its own.
func (s *Store) sharedWatch(ctx context.Context, k *api.Kind, tenant string, opts WatchOptions) (<-chan api.WatchEvent, bool, error) {
	f, err := s.fan.feed(k)
	if err != nil {
		return nil, false, err
	}
	from := opts.ResourceVersion
	if from == 0 {
		// "From now" is the store's revision now, so that a change
		// committed after Watch returns is never missed and one from
		// before is never shown.
		if from, err = s.Revision(ctx); err != nil {
			return nil, false, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dead || from < f.ringFrom {
		return nil, false, nil
	}
	var replay []*feedEvent
	for _, ev := range f.ring {
		if ev.rev > from {
			replay = append(replay, ev)
		}
	}
	sub := &subscriber{tenant: tenant, opts: opts, from: from, ch: make(chan api.WatchEvent, subscriberBuffer+len(replay))}
	for _, ev := range replay {
		f.deliver(sub, ev)
	}
	f.subs[sub] = struct{}{}
	context.AfterFunc(ctx, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.drop(sub)
	})
	return sub.ch, true, nil
}

// feed returns the running feed of k, starting it if need be.
func (fo *fanout) feed(k *api.Kind) (*feed, error) {
	fo.mu.Lock()
	defer fo.mu.Unlock()
	if f, ok := fo.feeds[k]; ok && !f.isDead() {
		return f, nil
	}
	f, err := fo.start(k)
	if err != nil {
		return nil, err
	}
	fo.feeds[k] = f
	return f, nil
}

func (f *feed) isDead() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dead
}

// start opens the etcd watch of a new feed at the current revision.
func (fo *fanout) start(k *api.Kind) (*feed, error) {
	s := fo.store
	rev, err := s.Revision(fo.ctx)
	if err != nil {
		return nil, err
	}
	f := &feed{s: s, k: k, subs: map[*subscriber]struct{}{}, ringFrom: rev, rev: rev}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(fo.ctx))
	wch := s.cli.Watch(wctx, s.Prefix(k, ""), clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())
	go func() {
		defer cancel()
		err := f.run(wch)
		fo.log.Debug("shared watch ended", "resource", k.Resource, "err", err)
		f.mu.Lock()
		defer f.mu.Unlock()
		f.dead = true
		st := StatusFor(errdefs.New(errdefs.ErrGone, "the server's shared watch of "+k.Resource+" restarted: watch again from the last resourceVersion you saw"))
		for sub := range f.subs {
			select {
			case sub.ch <- api.WatchEvent{Type: api.Error, Object: st}:
			default:
			}
			f.drop(sub)
		}
	}()
	return f, nil
}

// run reads the etcd watch until it ends.
func (f *feed) run(wch clientv3.WatchChan) error {
	for resp := range wch {
		if err := watchRespError(resp); err != nil {
			return err
		}
		if resp.IsProgressNotify() {
			f.progress(resp.Header.Revision)
			continue
		}
		for _, ev := range resp.Events {
			f.publish(f.decode(ev))
		}
	}
	return errdefs.New(errdefs.ErrUnavailable, "etcd watch closed")
}

// decode turns an etcd event into a feed event, decoding each value once.
func (f *feed) decode(ev *clientv3.Event) *feedEvent {
	fe := &feedEvent{rev: ev.Kv.ModRevision}
	key := strings.TrimPrefix(string(ev.Kv.Key), f.s.Prefix(f.k, ""))
	if f.k.TenantScoped {
		fe.tenant, _, _ = strings.Cut(key, "/")
	}
	if ev.Type == mvccpb.PUT {
		if o, err := decode(f.k, ev.Kv); err == nil {
			fe.cur = o
		}
	}
	if ev.PrevKv != nil && len(ev.PrevKv.Value) > 0 {
		if o, err := decode(f.k, ev.PrevKv); err == nil {
			fe.prev = o
		}
	}
	return fe
}

func (f *feed) publish(ev *feedEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev = ev.rev
	f.ring = append(f.ring, ev)
	if len(f.ring) > ringSize {
		f.ringFrom = f.ring[0].rev
		f.ring = append(f.ring[:0:0], f.ring[len(f.ring)-ringSize:]...)
	}
	for sub := range f.subs {
		f.deliver(sub, ev)
	}
}

func (f *feed) progress(rev int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if rev > f.rev {
		f.rev = rev
	}
	for sub := range f.subs {
		if !sub.opts.Bookmarks || rev <= sub.from {
			continue
		}
		obj := f.k.New()
		obj.GetObjectMeta().ResourceVersion = strconv.FormatInt(rev, 10)
		f.send(sub, api.WatchEvent{Type: api.Bookmark, Object: obj})
	}
}

// deliver sends ev to sub if it concerns it, as ADDED, MODIFIED or DELETED
// from sub's point of view. f.mu is held.
func (f *feed) deliver(sub *subscriber, ev *feedEvent) {
	if ev.rev <= sub.from || (sub.tenant != "" && ev.tenant != sub.tenant) {
		return
	}
	filtered := !sub.opts.Labels.Empty() || !sub.opts.Fields.Empty()
	curOK := ev.cur != nil && (!filtered || matches(f.k, ev.cur, sub.opts.Labels, sub.opts.Fields))
	prevOK := ev.prev != nil && (!filtered || matches(f.k, ev.prev, sub.opts.Labels, sub.opts.Fields))
	cur, gone, goneJS := ev.encoded()
	switch {
	case curOK && prevOK:
		f.send(sub, api.WatchEvent{Type: api.Modified, Object: ev.cur, Encoded: cur})
	case curOK:
		f.send(sub, api.WatchEvent{Type: api.Added, Object: ev.cur, Encoded: cur})
	case prevOK:
		f.send(sub, api.WatchEvent{Type: api.Deleted, Object: gone, Encoded: goneJS})
	}
}

// send queues an event for sub, cutting sub off when it has fallen too far
// behind. f.mu is held.
func (f *feed) send(sub *subscriber, ev api.WatchEvent) {
	if sub.closed {
		return
	}
	select {
	case sub.ch <- ev:
	default:
		f.s.fan.log.Warn("watcher too slow; closing its stream", "resource", f.k.Resource, "tenant", sub.tenant)
		f.drop(sub)
	}
}

// drop ends a subscription. f.mu is held.
func (f *feed) drop(sub *subscriber) {
	if sub.closed {
		return
	}
	sub.closed = true
	delete(f.subs, sub)
	close(sub.ch)
}

// compacted forgets, in every feed, the events at or before rev, so that a
// watch from a compacted revision falls back to etcd and gets 410 like
// any other client of the store.
func (fo *fanout) compacted(rev int64) {
	fo.mu.Lock()
	feeds := make([]*feed, 0, len(fo.feeds))
	for _, f := range fo.feeds {
		feeds = append(feeds, f)
	}
	fo.mu.Unlock()
	for _, f := range feeds {
		f.mu.Lock()
		if rev > f.ringFrom {
			f.ringFrom = rev
			i := 0
			for i < len(f.ring) && f.ring[i].rev <= rev {
				i++
			}
			f.ring = append(f.ring[:0:0], f.ring[i:]...)
		}
		f.mu.Unlock()
	}
}
