package runtimev1

import (
	"context"
	"slices"
	"time"
)

// healthResend is how often StreamHealth repeats an unchanged event, so
// that the host sees the stream is alive.
const healthResend = 30 * time.Second

// StreamHealth serves a Health stream: it calls check every interval and
// sends what it returns when it differs from the last event sent, or
// when that was about healthResend ago. It returns when ctx ends (nil)
// or a send fails.
func StreamHealth(ctx context.Context, send func(*HealthEvent) error, interval time.Duration, check func(context.Context) *HealthEvent) error {
	var last *HealthEvent
	var lastSent time.Time
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ev := check(ctx)
		if last == nil || !sameHealth(ev, last) || time.Since(lastSent) >= healthResend-interval/2 {
			if err := send(ev); err != nil {
				return err
			}
			last, lastSent = ev, time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sameHealth reports whether two events say the same, timestamps aside.
func sameHealth(a, b *HealthEvent) bool {
	return a.Healthy == b.Healthy && a.Description == b.Description &&
		slices.EqualFunc(a.Conditions, b.Conditions, func(x, y *RuntimeCondition) bool {
			return x.Type == y.Type && x.Status == y.Status && x.Reason == y.Reason && x.Message == y.Message
		})
}
