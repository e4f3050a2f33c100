package store

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3rpc"
)

// mustWatch starts a watch that must start.
func mustWatch(t *testing.T, ctx context.Context, s *Store, k *api.Kind, tenant string, opts WatchOptions) <-chan api.WatchEvent {
	t.Helper()
	ch, err := s.Watch(ctx, k, tenant, opts)
	if err != nil {
		t.Fatalf("Watch(%s, %q, %+v) = %v", k.Resource, tenant, opts, err)
	}
	if ch == nil {
		t.Fatalf("Watch(%s, %q, %+v) = nil channel, nil error", k.Resource, tenant, opts)
	}
	return ch
}

// mustUpdate applies change to a copy of obj and updates it.
func mustUpdate[T api.Object](t *testing.T, s *Store, obj T, change func(T)) T {
	t.Helper()
	c := api.Clone(obj)
	change(c)
	out, err := s.Update(t.Context(), c)
	if err != nil {
		m := obj.GetObjectMeta()
		t.Fatalf("Update(%s/%s) = %v", m.Tenant, m.Name, err)
	}
	return out.(T)
}

// mustDelete deletes an object and returns it at its deletion revision.
func mustDelete(t *testing.T, s *Store, k *api.Kind, tenant, name string) api.Object {
	t.Helper()
	out, err := s.Delete(t.Context(), k, tenant, name, 0)
	if err != nil {
		t.Fatalf("Delete(%s/%s) = %v", tenant, name, err)
	}
	return out
}

func TestWatchEvents(t *testing.T) { bothWatchModes(t, testWatchEvents) }

func testWatchEvents(t *testing.T, s *Store) {
	ctx := t.Context()
	inA := mustWatch(t, ctx, s, cmKind, "a", WatchOptions{})
	every := mustWatch(t, ctx, s, cmKind, "", WatchOptions{})
	pods := mustWatch(t, ctx, s, podKind, "a", WatchOptions{})

	// Written right after Watch returned: none may be missed.
	created := mustCreate(t, s, configMap("a", "x", map[string]string{"app": "web"}))
	other := mustCreate(t, s, configMap("ab", "x", nil)) // another tenant, prefix "a"
	updated := mustUpdate(t, s, created, func(c *api.ConfigMap) { c.Data["k"] = "v" })
	deleted := mustDelete(t, s, cmKind, "a", "x")
	sentinel := mustCreate(t, s, configMap("a", "zz", nil))
	sentinelPod := mustCreate(t, s, pod("a", "zz", "", api.PodPending))

	rv := func(o api.Object) int64 { return rvOf(t, o) }
	delRev := rv(deleted)
	if delRev <= rv(updated) {
		t.Fatalf("Delete() resourceVersion = %d, want the deletion revision (> %d)", delRev, rv(updated))
	}
	evs := wantEvents(t, inA,
		evt(api.Added, "a", "x", rv(created)),
		evt(api.Modified, "a", "x", rv(updated)),
		evt(api.Deleted, "a", "x", delRev),
		evt(api.Added, "a", "zz", rv(sentinel)),
	)
	sameObject(t, "ADDED object", evs[0].Object, created)
	sameObject(t, "MODIFIED object", evs[1].Object, updated)
	// DELETED carries the last stored object at the deletion revision.
	sameObject(t, "DELETED object", evs[2].Object, withRV(updated, delRev))

	wantEvents(t, every,
		evt(api.Added, "a", "x", rv(created)),
		evt(api.Added, "ab", "x", rv(other)),
		evt(api.Modified, "a", "x", rv(updated)),
		evt(api.Deleted, "a", "x", delRev),
		evt(api.Added, "a", "zz", rv(sentinel)),
	)
	// A watch of another kind sees none of the configmaps.
	wantEvents(t, pods, evt(api.Added, "a", "zz", rv(sentinelPod)))
}

func TestWatchResume(t *testing.T) { bothWatchModes(t, testWatchResume) }

func testWatchResume(t *testing.T, s *Store) {
	ctx := t.Context()
	start := mustRevision(t, s)

	// The first connection sees two creates, then drops.
	ctx1, cancel1 := context.WithCancel(ctx)
	ch1 := mustWatch(t, ctx1, s, cmKind, "a", WatchOptions{})
	x1 := mustCreate(t, s, configMap("a", "x1", nil))
	x2 := mustCreate(t, s, configMap("a", "x2", nil))
	seen := wantEvents(t, ch1, evt(api.Added, "a", "x1", rvOf(t, x1)), evt(api.Added, "a", "x2", rvOf(t, x2)))
	cancel1()
	waitClosed(t, ch1)
	lastSeen := rvOf(t, seen[len(seen)-1].Object)

	// Changes while disconnected.
	u1 := mustUpdate(t, s, x1, func(c *api.ConfigMap) { c.Data["v"] = "2" })
	mustCreate(t, s, configMap("b", "x1", nil)) // not in the watched tenant
	x3 := mustCreate(t, s, configMap("a", "x3", nil))
	d2 := mustDelete(t, s, cmKind, "a", "x2")
	missed := []string{
		evt(api.Modified, "a", "x1", rvOf(t, u1)),
		evt(api.Added, "a", "x3", rvOf(t, x3)),
		evt(api.Deleted, "a", "x2", rvOf(t, d2)),
	}

	// Reconnect from the last revision seen: exactly the missed events,
	// none of the seen ones again.
	ch2 := mustWatch(t, ctx, s, cmKind, "a", WatchOptions{ResourceVersion: lastSeen})
	evs := wantEvents(t, ch2, missed...)
	sameObject(t, "replayed MODIFIED object", evs[0].Object, u1)
	sameObject(t, "replayed DELETED object", evs[2].Object, withRV(x2, rvOf(t, d2)))
	sentinel := mustCreate(t, s, configMap("a", "zz", nil))
	wantEvents(t, ch2, evt(api.Added, "a", "zz", rvOf(t, sentinel)))

	// From any revision of the history, exactly what came after it.
	history := append([]string{evt(api.Added, "a", "x1", rvOf(t, x1)), evt(api.Added, "a", "x2", rvOf(t, x2))}, missed...)
	history = append(history, evt(api.Added, "a", "zz", rvOf(t, sentinel)))
	revs := []int64{start, rvOf(t, x1), rvOf(t, x2), rvOf(t, u1), rvOf(t, x3), rvOf(t, d2)}
	for i, rev := range revs {
		t.Run(fmt.Sprintf("from %d", rev), func(t *testing.T) {
			ch := mustWatch(t, ctx, s, cmKind, "a", WatchOptions{ResourceVersion: rev})
			wantEvents(t, ch, history[i:]...)
		})
	}
	t.Run("from between events", func(t *testing.T) {
		// The create in tenant b is at rvOf(u1)+1: nothing of tenant a happened there.
		ch := mustWatch(t, ctx, s, cmKind, "a", WatchOptions{ResourceVersion: rvOf(t, u1) + 1})
		wantEvents(t, ch, history[3:]...)
	})
}

func TestWatchSelectors(t *testing.T) { bothWatchModes(t, testWatchSelectors) }

func testWatchSelectors(t *testing.T, s *Store) {
	ctx := t.Context()

	t.Run("labels", func(t *testing.T) {
		ch := mustWatch(t, ctx, s, cmKind, "a", WatchOptions{Labels: labelSelector(t, "app=web")})
		x := mustCreate(t, s, configMap("a", "x", map[string]string{"app": "db"})) // not selected
		in := mustUpdate(t, s, x, func(c *api.ConfigMap) { c.Metadata.Labels["app"] = "web" })
		mod := mustUpdate(t, s, in, func(c *api.ConfigMap) { c.Data["v"] = "2" })
		out := mustUpdate(t, s, mod, func(c *api.ConfigMap) { c.Metadata.Labels["app"] = "db" })
		mustUpdate(t, s, out, func(c *api.ConfigMap) { c.Data["v"] = "3" }) // not selected
		mustDelete(t, s, cmKind, "a", "x")                                  // not selected
		y := mustCreate(t, s, configMap("a", "y", map[string]string{"app": "web"}))
		dy := mustDelete(t, s, cmKind, "a", "y")
		evs := wantEvents(t, ch,
			evt(api.Added, "a", "x", rvOf(t, in)),
			evt(api.Modified, "a", "x", rvOf(t, mod)),
			evt(api.Deleted, "a", "x", rvOf(t, out)),
			evt(api.Added, "a", "y", rvOf(t, y)),
			evt(api.Deleted, "a", "y", rvOf(t, dy)),
		)
		sameObject(t, "ADDED (relabelled in) object", evs[0].Object, in)
		if got := evs[2].Object.GetObjectMeta().Labels["app"]; got != "db" {
			t.Errorf("DELETED (relabelled out) object has app=%s, want app=db (the version that stopped matching)", got)
		}
	})

	t.Run("fields", func(t *testing.T) {
		ch := mustWatch(t, ctx, s, podKind, "a", WatchOptions{Fields: fieldSelector(t, "spec.nodeName=n1")})
		p := mustCreate(t, s, pod("a", "p", "", api.PodPending)) // not yet scheduled
		bound := mustUpdate(t, s, p, func(p *api.Pod) { p.Spec.NodeName = "n1" })
		running := mustUpdate(t, s, bound, func(p *api.Pod) { p.Status.Phase = api.PodRunning })
		mustCreate(t, s, pod("a", "q", "n2", api.PodPending)) // another node
		del := mustDelete(t, s, podKind, "a", "p")
		r := mustCreate(t, s, pod("a", "r", "n1", api.PodPending))
		wantEvents(t, ch,
			evt(api.Added, "a", "p", rvOf(t, bound)),
			evt(api.Modified, "a", "p", rvOf(t, running)),
			evt(api.Deleted, "a", "p", rvOf(t, del)),
			evt(api.Added, "a", "r", rvOf(t, r)),
		)
	})

	t.Run("labels and fields", func(t *testing.T) {
		opts := WatchOptions{Labels: labelSelector(t, "app=web"), Fields: fieldSelector(t, "status.phase=Running")}
		ch := mustWatch(t, ctx, s, podKind, "b", opts)
		p := pod("b", "p", "n1", api.PodPending)
		p.Metadata.Labels = map[string]string{"app": "web"}
		p = mustCreate(t, s, p)
		running := mustUpdate(t, s, p, func(p *api.Pod) { p.Status.Phase = api.PodRunning })
		relabelled := mustUpdate(t, s, running, func(p *api.Pod) { p.Metadata.Labels["app"] = "db" })
		wantEvents(t, ch,
			evt(api.Added, "b", "p", rvOf(t, running)),
			evt(api.Deleted, "b", "p", rvOf(t, relabelled)),
		)
	})

	t.Run("resumed with a selector", func(t *testing.T) {
		// Replayed history goes through the same selection.
		rev := mustRevision(t, s)
		x := mustCreate(t, s, configMap("c", "x", map[string]string{"app": "db"}))
		in := mustUpdate(t, s, x, func(c *api.ConfigMap) { c.Metadata.Labels["app"] = "web" })
		out := mustUpdate(t, s, in, func(c *api.ConfigMap) { c.Metadata.Labels["app"] = "db" })
		ch := mustWatch(t, ctx, s, cmKind, "c", WatchOptions{ResourceVersion: rev, Labels: labelSelector(t, "app=web")})
		wantEvents(t, ch,
			evt(api.Added, "c", "x", rvOf(t, in)),
			evt(api.Deleted, "c", "x", rvOf(t, out)),
		)
	})
}

func TestWatchCompacted(t *testing.T) { bothWatchModes(t, testWatchCompacted) }

func testWatchCompacted(t *testing.T, s *Store) {
	ctx := t.Context()
	x := mustCreate(t, s, configMap("a", "x", nil))
	old := rvOf(t, x)
	for i := range 3 {
		x = mustUpdate(t, s, x, func(c *api.ConfigMap) { c.Data["i"] = fmt.Sprint(i) })
	}
	compacted, err := s.Compact(ctx, 0)
	if err != nil {
		t.Fatalf("Compact(0) = %v", err)
	}

	for _, rv := range []int64{1, old, compacted - 2} {
		ch, err := s.Watch(ctx, cmKind, "a", WatchOptions{ResourceVersion: rv})
		if ch != nil {
			t.Errorf("Watch(from %d, compacted at %d) returned a channel, want none", rv, compacted)
		}
		wantErr(t, fmt.Sprintf("Watch(from %d, compacted at %d)", rv, compacted), err, errdefs.ErrGone)
		if st := StatusFor(err); st.Code != 410 || st.Reason != "Gone" {
			t.Errorf("StatusFor(%v) = %d %s, want 410 Gone", err, st.Code, st.Reason)
		}
	}

	// From the compaction revision on, history is still there.
	ch := mustWatch(t, ctx, s, cmKind, "a", WatchOptions{ResourceVersion: compacted})
	y := mustCreate(t, s, configMap("a", "y", nil))
	wantEvents(t, ch, evt(api.Added, "a", "y", rvOf(t, y)))
}

// TestWatchCompactedWhileCatchingUp compacts the history a watch started
// in the past is still replaying. etcd catches such a watch up every
// 100ms, so a compaction right after Watch returns usually comes first;
// when the watch wins the race, the test tries again with new history.
func TestWatchCompactedWhileCatchingUp(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	x := mustCreate(t, s, configMap("a", "x", nil))
	for attempt := range 5 {
		from := rvOf(t, x)
		var want []string
		for i := range 3 {
			x = mustUpdate(t, s, x, func(c *api.ConfigMap) { c.Data["i"] = fmt.Sprint(attempt, i) })
			want = append(want, evt(api.Modified, "a", "x", rvOf(t, x)))
		}
		wctx, cancel := context.WithCancel(ctx)
		ch := mustWatch(t, wctx, s, cmKind, "a", WatchOptions{ResourceVersion: from})
		if _, err := s.Compact(ctx, 0); err != nil {
			t.Fatalf("Compact(0) = %v", err)
		}
		var got []string
		for len(got) < len(want) {
			ev := next(t, ch)
			if ev.Type != api.Error {
				got = append(got, eventString(ev))
				continue
			}
			st, ok := ev.Object.(*api.Status)
			if !ok || st.Code != 410 || st.Reason != "Gone" {
				t.Fatalf("ERROR event object = %s, want a Status 410 Gone", mustJSON(ev.Object))
			}
			if len(got) != 0 {
				t.Errorf("events before the ERROR = %q, want none: the history was compacted", got)
			}
			// The stream ends after the ERROR, without the context ending.
			waitClosed(t, ch)
			cancel()
			return
		}
		cancel()
		if !slices.Equal(got, want) {
			t.Fatalf("watch from %d = %q, want %q or an ERROR", from, got, want)
		}
		t.Logf("attempt %d: the watch caught up before the compaction", attempt)
	}
	// Every attempt's replay was checked above; the ERROR path is racy to
	// reach and TestWatchCompacted covers compaction itself.
	t.Log("the watch caught up before the compaction in every attempt: only the replays were checked")
}

// TestWatchBookmarksPeriodic waits for the BOOKMARK that etcd's periodic
// progress notification brings an idle watch. It runs in parallel with
// the other parallel tests: it mostly waits.
func TestWatchBookmarksPeriodic(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	// etcd sends progress notifications at a process-wide interval that a
	// member's WatchProgressNotifyInterval sets when it starts, 10 minutes
	// by default.
	iv := v3rpc.GetProgressReportInterval()
	if iv > 15*time.Second {
		t.Fatalf("etcd's watch progress notify interval is %v: the embedded member should set %v", iv, watchProgressInterval)
	}
	ch := mustWatch(t, ctx, s, cmKind, "a", WatchOptions{Bookmarks: true})
	plain := mustWatch(t, ctx, s, cmKind, "a", WatchOptions{})
	mustCreate(t, s, configMap("b", "x", nil)) // moves the revision on, unwatched
	rev := mustRevision(t, s)
	wait := 3 * iv
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed, want a BOOKMARK")
		}
		if ev.Type != api.Bookmark || ev.Object.GetObjectMeta().ResourceVersion != fmt.Sprint(rev) {
			t.Fatalf("first event of an idle watch = %s, want BOOKMARK at %d", eventString(ev), rev)
		}
	case <-time.After(wait):
		t.Fatalf("no BOOKMARK within %v (3 progress notify intervals)", wait)
	}
	// The watch without Bookmarks got nothing.
	x := mustCreate(t, s, configMap("a", "x", nil))
	wantEvents(t, plain, evt(api.Added, "a", "x", rvOf(t, x)))
	wantEventsSkippingBookmarks(t, ch, evt(api.Added, "a", "x", rvOf(t, x)))
}

// TestWatchBookmarksRequested asks etcd for a progress notification
// instead of waiting for the periodic one.
func TestWatchBookmarksRequested(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	bookmarks := mustWatch(t, ctx, s, cmKind, "a", WatchOptions{Bookmarks: true})
	plain := mustWatch(t, ctx, s, cmKind, "a", WatchOptions{})
	x := mustCreate(t, s, configMap("a", "x", nil))
	wantEventsSkippingBookmarks(t, bookmarks, evt(api.Added, "a", "x", rvOf(t, x)))
	wantEvents(t, plain, evt(api.Added, "a", "x", rvOf(t, x)))
	// Move the revision on outside the watched prefix: the bookmark
	// carries the store's revision, not the last event's.
	mustCreate(t, s, configMap("b", "x", nil))
	rev := mustRevision(t, s)

	// Ask etcd for a progress notification on the watches' stream (the
	// store's watches require a leader, and that metadata keys the stream).
	if err := s.Client().RequestProgress(clientv3.WithRequireLeader(ctx)); err != nil {
		t.Fatalf("RequestProgress() = %v", err)
	}
	ev := next(t, bookmarks)
	if ev.Type != api.Bookmark {
		t.Fatalf("event after a progress notification = %s, want BOOKMARK", eventString(ev))
	}
	if _, ok := ev.Object.(*api.ConfigMap); !ok {
		t.Errorf("BOOKMARK object = %T, want *api.ConfigMap (the watched kind)", ev.Object)
	}
	if m := ev.Object.GetObjectMeta(); m.ResourceVersion != fmt.Sprint(rev) || m.Name != "" {
		t.Errorf("BOOKMARK object metadata = %+v, want only resourceVersion %d", m, rev)
	}
	// A bookmark is a place to resume from.
	resumed := mustWatch(t, ctx, s, cmKind, "a", WatchOptions{ResourceVersion: rev})

	// Without Bookmarks the notification is not passed on.
	y := mustCreate(t, s, configMap("a", "y", nil))
	wantEvents(t, plain, evt(api.Added, "a", "y", rvOf(t, y)))
	wantEventsSkippingBookmarks(t, bookmarks, evt(api.Added, "a", "y", rvOf(t, y)))
	wantEvents(t, resumed, evt(api.Added, "a", "y", rvOf(t, y)))
}

// storeWatchGoroutines counts the goroutines the store's Watch started.
func storeWatchGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "core/store.(*Store).Watch") {
			count++
		}
	}
	return count
}

func TestWatchClosesOnCancel(t *testing.T) {
	s := newStore(t)
	// Let the member settle before counting goroutines.
	mustCreate(t, s, configMap("a", "warm", nil))
	base := runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(t.Context())
	var chans []<-chan api.WatchEvent
	for _, opts := range []WatchOptions{
		{},
		{Bookmarks: true},
		{Labels: labelSelector(t, "app=web")},
		{ResourceVersion: 1},
	} {
		chans = append(chans, mustWatch(t, ctx, s, cmKind, "a", opts))
	}
	everyTenant := mustWatch(t, ctx, s, cmKind, "", WatchOptions{})
	// A consumer that stopped reading: its watch is blocked sending when
	// the context ends.
	stalled := mustWatch(t, ctx, s, cmKind, "s", WatchOptions{})
	for i := range watchBuffer + 10 {
		mustCreate(t, s, configMap("s", fmt.Sprint("x", i), nil))
	}
	// Make sure that the other watches are running, not just started.
	y := mustCreate(t, s, configMap("a", "y", map[string]string{"app": "web"}))
	for _, ch := range chans[:3] {
		wantEventsSkippingBookmarks(t, ch, evt(api.Added, "a", "y", rvOf(t, y)))
	}
	if n := storeWatchGoroutines(); n < len(chans)+2 {
		t.Fatalf("store watch goroutines = %d with %d watches running, want at least one each", n, len(chans)+2)
	}

	cancel()
	for _, ch := range append(chans, everyTenant, stalled) {
		waitClosed(t, ch)
	}
	deadline := time.Now().Add(eventTimeout)
	for {
		n, total := storeWatchGoroutines(), runtime.NumGoroutine()
		if n == 0 && total <= base {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%v after cancelling every watch: %d store watch goroutines (want 0), %d goroutines (want <= %d as before)\n%s",
				eventTimeout, n, total, base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatchCancelledBeforeStart(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ch, err := s.Watch(ctx, cmKind, "a", WatchOptions{})
	if err == nil || ch != nil {
		t.Fatalf("Watch(cancelled ctx) = %v, %v; want no channel and an error", ch, err)
	}
}

// TestWatchClosedStore checks that Watch on a store whose etcd client is
// closed fails rather than returning no channel and no error.
func TestWatchClosedStore(t *testing.T) {
	e, s := newMember(t)
	if err := e.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	for _, opts := range []WatchOptions{{}, {ResourceVersion: 1}} {
		ch, err := s.Watch(t.Context(), cmKind, "a", opts)
		if ch != nil {
			t.Errorf("Watch(%+v) on a closed store returned a channel, want none", opts)
		}
		wantErr(t, fmt.Sprintf("Watch(%+v) on a closed store", opts), err, errdefs.ErrUnavailable)
	}
}

// bothWatchModes runs a watch test on a store whose watches are each an
// etcd watch of their own, and on one that shares a feed per kind.
func bothWatchModes(t *testing.T, test func(*testing.T, *Store)) {
	t.Run("direct", func(t *testing.T) { test(t, newStore(t)) })
	t.Run("shared", func(t *testing.T) {
		s := newStore(t)
		s.ShareWatches(t.Context(), tbLogger(t))
		test(t, s)
	})
}
