package store

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
)

func sharedStore(t *testing.T) *Store {
	t.Helper()
	s := newStore(t)
	s.ShareWatches(t.Context(), tbLogger(t))
	return s
}

// TestSharedWatchEncodedOnce checks that every watcher of a shared feed
// gets the same event, with Encoded equal to the object's JSON.
func TestSharedWatchEncodedOnce(t *testing.T) {
	s := sharedStore(t)
	ctx := t.Context()
	a := mustWatch(t, ctx, s, cmKind, "a", WatchOptions{})
	all := mustWatch(t, ctx, s, cmKind, "", WatchOptions{})
	other := mustWatch(t, ctx, s, cmKind, "b", WatchOptions{})
	x := mustCreate(t, s, configMap("a", "x", nil))
	for name, ch := range map[string]<-chan api.WatchEvent{"tenant a": a, "all tenants": all} {
		ev := next(t, ch)
		want, _ := json.Marshal(ev.Object)
		if ev.Type != api.Added || rvOf(t, ev.Object) != rvOf(t, x) || string(ev.Encoded) != string(want) {
			t.Errorf("%s: event %s rv %d encoded %s, want ADDED rv %d encoded %s", name, ev.Type, rvOf(t, ev.Object), ev.Encoded, rvOf(t, x), want)
		}
	}
	y := mustCreate(t, s, configMap("b", "y", nil))
	wantEvents(t, other, evt(api.Added, "b", "y", rvOf(t, y)))
}

// TestSharedWatchSlowWatcherCutOff checks that a watcher that stops
// reading is closed once its buffer is full, without holding up others.
func TestSharedWatchSlowWatcherCutOff(t *testing.T) {
	s := sharedStore(t)
	ctx := t.Context()
	slow := mustWatch(t, ctx, s, cmKind, "a", WatchOptions{})
	fast := mustWatch(t, ctx, s, cmKind, "a", WatchOptions{})
	n := subscriberBuffer + 10
	done := make(chan int)
	go func() {
		got := 0
		for range fast {
			got++
			if got == n {
				break
			}
		}
		done <- got
	}()
	for i := range n {
		mustCreate(t, s, configMap("a", fmt.Sprintf("o%04d", i), nil))
	}
	select {
	case got := <-done:
		if got != n {
			t.Errorf("fast watcher got %d events, want %d", got, n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("fast watcher did not get every event within 30s")
	}
	count := 0
	for range slow {
		count++
	}
	if count != subscriberBuffer {
		t.Errorf("slow watcher got %d events before being cut off, want %d (its buffer)", count, subscriberBuffer)
	}
}
