package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
)

// recorder writes events about pods. Repeats of the same event of a pod
// within dedupWindow raise the count of the first instead of adding
// another object. Writes happen in the background, in order; failures
// are logged, never fatal.
type recorder struct {
	c    *client.Client
	node string
	log  *slog.Logger

	mu   sync.Mutex
	seen map[string]*api.Event // by uid/type/reason/message
	work chan func()
}

const (
	dedupWindow  = 10 * time.Minute
	eventBacklog = 1024
)

func newRecorder(c *client.Client, node string, log *slog.Logger) *recorder {
	r := &recorder{c: c, node: node, log: log, seen: map[string]*api.Event{}, work: make(chan func(), eventBacklog)}
	go func() {
		for f := range r.work {
			f()
		}
	}()
	return r
}

var eventKind, _ = api.KindFor("events")

// pod records an event about pod.
func (r *recorder) pod(pod *api.Pod, typ, reason, msg string) {
	key := pod.Metadata.UID + "/" + typ + "/" + reason + "/" + msg
	now := api.NewTime(time.Now())
	r.mu.Lock()
	prev := r.seen[key]
	r.mu.Unlock()
	f := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if prev != nil && time.Since(prev.FirstTimestamp.Time) < dedupWindow {
			ev := *prev
			ev.Count++
			ev.LastTimestamp = now
			if out, err := r.c.Update(ctx, &ev); err == nil {
				r.remember(key, out.(*api.Event))
				return
			}
		}
		ev := &api.Event{
			TypeMeta:       api.TypeMeta{APIVersion: api.Version, Kind: "Event"},
			Metadata:       api.ObjectMeta{Name: fmt.Sprintf("%s.%x", pod.Metadata.Name, time.Now().UnixNano()), Tenant: pod.Metadata.Tenant},
			InvolvedObject: api.ObjectReference{Kind: "Pod", Name: pod.Metadata.Name, UID: pod.Metadata.UID},
			Reason:         reason,
			Message:        msg,
			Type:           typ,
			Source:         api.EventSource{Component: "paddock-agent", Host: r.node},
			FirstTimestamp: now,
			LastTimestamp:  now,
			Count:          1,
		}
		out, err := r.c.Create(ctx, ev)
		if err != nil {
			r.log.Debug("record event", "pod", pod.Metadata.Name, "reason", reason, "error", err)
			return
		}
		r.remember(key, out.(*api.Event))
	}
	select {
	case r.work <- f:
	default:
		r.log.Warn("event backlog full; dropping an event", "pod", pod.Metadata.Name, "reason", reason)
	}
}

func (r *recorder) remember(key string, ev *api.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seen) > 4096 {
		for k, e := range r.seen {
			if time.Since(e.FirstTimestamp.Time) > dedupWindow {
				delete(r.seen, k)
			}
		}
	}
	r.seen[key] = ev
}
