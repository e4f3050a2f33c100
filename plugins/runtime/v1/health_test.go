package runtimev1

import (
	"context"
	"testing"
	"time"
)

// StreamHealth sends the first event, then only changes (timestamps
// aside), and stops when its context ends.
func TestStreamHealth(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	script := []*HealthEvent{
		{Healthy: true, Timestamp: 1},
		{Healthy: true, Timestamp: 2},
		{Healthy: false, Description: "runc missing", Timestamp: 3},
		{Healthy: false, Description: "runc missing", Timestamp: 4, Conditions: []*RuntimeCondition{{Type: "RuntimeReady", Reason: "NoRuntime"}}},
		{Healthy: false, Description: "runc missing", Timestamp: 5, Conditions: []*RuntimeCondition{{Type: "RuntimeReady", Reason: "NoRuntime"}}},
	}
	calls := 0
	check := func(context.Context) *HealthEvent {
		ev := script[min(calls, len(script)-1)]
		calls++
		if calls == len(script)+2 {
			cancel()
		}
		return ev
	}
	var sent []int64
	err := StreamHealth(ctx, func(ev *HealthEvent) error { sent = append(sent, ev.Timestamp); return nil }, time.Millisecond, check)
	if err != nil {
		t.Fatalf("StreamHealth = %v, want nil when its context ends", err)
	}
	if want := []int64{1, 3, 4}; len(sent) != len(want) || sent[0] != 1 || sent[1] != 3 || sent[2] != 4 {
		t.Errorf("sent events %v, want %v (the first, then each change)", sent, want)
	}
}
