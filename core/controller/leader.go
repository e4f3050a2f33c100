package controller

import (
	"context"
	"log/slog"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
)

// elector holds or waits for a Lease on behalf of one process. Its
// fields are used by Run's goroutine only.
type elector struct {
	c        *client.Client
	name     string
	identity string
	// duration is how long a lease not seen renewed stays held;
	// renewPeriod how often the holder renews; deadline how long the
	// holder keeps leading without a successful renewal; retry how often
	// a candidate (or a holder whose renewal failed) tries again.
	duration, renewPeriod, deadline, retry time.Duration
	log                                    *slog.Logger
	now                                    func() time.Time

	// The lease as last seen, and when (on this process's clock).
	observedRV string
	observedAt time.Time
}

// run campaigns until ctx ends. While it holds the lease it runs lead
// with a context that ends when leadership is lost (or ctx ends); lead
// must return soon after. run returns once lead has returned, after
// releasing the lease if ctx ended while leading.
func (e *elector) run(ctx context.Context, lead func(ctx context.Context)) {
	for {
		if !e.acquire(ctx) {
			return
		}
		e.log.Info("leading", "lease", e.name, "identity", e.identity)
		lctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			lead(lctx)
		}()
		e.renew(ctx, done)
		cancel()
		<-done
		if ctx.Err() != nil {
			e.release()
			return
		}
		e.log.Warn("lost leadership; controllers stopped", "lease", e.name, "identity", e.identity)
	}
}

// acquire tries every retry period until it holds the lease; it reports
// false when ctx ended first.
func (e *elector) acquire(ctx context.Context) bool {
	for {
		ok, err := e.tryAcquireOrRenew(ctx)
		if ok {
			return true
		}
		if err != nil && ctx.Err() == nil {
			e.log.Debug("cannot take the lease", "lease", e.name, "error", err)
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(e.retry):
		}
	}
}

// renew keeps the lease until ctx ends, lead returns (done closes), the
// lease is seen held by someone else, or no renewal succeeded within the
// deadline.
func (e *elector) renew(ctx context.Context, done <-chan struct{}) {
	last := e.now()
	wait := e.renewPeriod
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-time.After(wait):
		}
		rctx, cancel := context.WithDeadline(ctx, last.Add(e.deadline))
		ok, err := e.tryAcquireOrRenew(rctx)
		cancel()
		switch {
		case ok:
			last, wait = e.now(), e.renewPeriod
			continue
		case ctx.Err() != nil:
			return
		case err == nil:
			return // someone else holds it
		case !e.now().Before(last.Add(e.deadline)):
			e.log.Error("cannot renew the lease in time; stepping down", "lease", e.name, "error", err)
			return
		}
		e.log.Warn("cannot renew the lease; retrying", "lease", e.name, "error", err)
		wait = e.retry
	}
}

// tryAcquireOrRenew takes or renews the lease with compare-and-swap. It
// reports false with a nil error when someone else holds it.
func (e *elector) tryAcquireOrRenew(ctx context.Context) (bool, error) {
	now := e.now()
	o, err := e.c.Get(ctx, leaseKind, "", e.name)
	if errdefs.IsNotFound(err) {
		l := &api.Lease{
			TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Lease"},
			Metadata: api.ObjectMeta{Name: e.name},
			Spec:     e.held(api.LeaseSpec{}, now),
		}
		out, err := e.c.Create(ctx, l)
		if err != nil {
			return false, err
		}
		e.observe(out, now)
		return true, nil
	}
	if err != nil {
		return false, err
	}
	cur := o.(*api.Lease)
	if cur.Metadata.ResourceVersion != e.observedRV {
		e.observe(cur, now)
	}
	if h := cur.Spec.HolderIdentity; h != "" && h != e.identity && now.Before(e.observedAt.Add(leaseDuration(cur, e.duration))) {
		return false, nil
	}
	next := api.Clone(cur)
	next.Spec = e.held(cur.Spec, now)
	out, err := e.c.Update(ctx, next)
	if err != nil {
		return false, err
	}
	e.observe(out, now)
	return true, nil
}

// held returns spec as this process holding the lease at now.
func (e *elector) held(spec api.LeaseSpec, now time.Time) api.LeaseSpec {
	if spec.HolderIdentity != e.identity {
		spec.HolderIdentity = e.identity
		spec.AcquireTime = api.NewTime(now)
		if spec.RenewTime != nil {
			spec.LeaseTransitions++
		}
	}
	spec.LeaseDurationSeconds = int32(e.duration / time.Second)
	spec.RenewTime = api.NewTime(now)
	return spec
}

func (e *elector) observe(o api.Object, now time.Time) {
	e.observedRV, e.observedAt = o.GetObjectMeta().ResourceVersion, now
}

// release gives the lease up so that another process takes it at once.
func (e *elector) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	o, err := e.c.Get(ctx, leaseKind, "", e.name)
	if err != nil {
		e.log.Warn("cannot release the lease", "lease", e.name, "error", err)
		return
	}
	l := o.(*api.Lease)
	if l.Spec.HolderIdentity != e.identity {
		return
	}
	l.Spec.HolderIdentity = ""
	if _, err := e.c.Update(ctx, l); err != nil {
		e.log.Warn("cannot release the lease", "lease", e.name, "error", err)
		return
	}
	e.log.Info("released the lease", "lease", e.name, "identity", e.identity)
}

// leaseDuration is the duration the holder wrote, else def.
func leaseDuration(l *api.Lease, def time.Duration) time.Duration {
	if l.Spec.LeaseDurationSeconds > 0 {
		return time.Duration(l.Spec.LeaseDurationSeconds) * time.Second
	}
	return def
}
