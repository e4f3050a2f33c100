package workqueue

import (
	"sync"
	"testing"
	"time"
)

func TestDedupAndDirty(t *testing.T) {
	q := New(time.Millisecond, time.Second)
	q.Add("a")
	q.Add("a")
	q.Add("b")
	if q.Len() != 2 {
		t.Fatalf("Len = %d, want 2 (a deduplicated)", q.Len())
	}
	k, _ := q.Get()
	if k != "a" {
		t.Fatalf("Get = %q, want a (FIFO)", k)
	}
	q.Add("a") // while processing: queued again after Done, not now
	if q.Len() != 1 {
		t.Fatalf("Len while a is processed = %d, want 1", q.Len())
	}
	q.Done("a")
	if q.Len() != 2 {
		t.Fatalf("Len after Done = %d, want 2 (a queued again)", q.Len())
	}
}

func TestNeverTwoWorkersOnOneKey(t *testing.T) {
	q := New(time.Millisecond, time.Second)
	var mu sync.Mutex
	active := map[string]bool{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k, ok := q.Get()
				if !ok {
					return
				}
				mu.Lock()
				if active[k] {
					t.Errorf("key %s processed twice at once", k)
				}
				active[k] = true
				mu.Unlock()
				time.Sleep(100 * time.Microsecond)
				mu.Lock()
				active[k] = false
				mu.Unlock()
				q.Done(k)
			}
		}()
	}
	for i := range 2000 {
		q.Add(string(rune('a' + i%5)))
	}
	deadline := time.Now().Add(10 * time.Second)
	for q.Len() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	q.ShutDown()
	wg.Wait()
}

func TestRetryBacksOffAndForgetResets(t *testing.T) {
	q := New(10*time.Millisecond, 40*time.Millisecond)
	want := []time.Duration{10, 20, 40, 40}
	for i, w := range want {
		if d := q.Retry("k"); d != w*time.Millisecond {
			t.Errorf("Retry %d = %v, want %v", i, d, w*time.Millisecond)
		}
	}
	if q.Failures("k") != 4 {
		t.Errorf("Failures = %d, want 4", q.Failures("k"))
	}
	q.Forget("k")
	if d := q.Retry("k"); d != 10*time.Millisecond {
		t.Errorf("Retry after Forget = %v, want 10ms", d)
	}
	start := time.Now()
	k, ok := q.Get() // the delayed adds arrive, deduplicated
	if !ok || k != "k" {
		t.Fatalf("Get = %q %v", k, ok)
	}
	if el := time.Since(start); el < 5*time.Millisecond {
		t.Errorf("delayed key arrived after %v, want after its back-off", el)
	}
}

func TestAddAfterOrder(t *testing.T) {
	q := New(time.Millisecond, time.Second)
	q.AddAfter("late", 60*time.Millisecond)
	q.AddAfter("early", 10*time.Millisecond)
	if k, _ := q.Get(); k != "early" {
		t.Errorf("first = %q, want early", k)
	}
	if k, _ := q.Get(); k != "late" {
		t.Errorf("second = %q, want late", k)
	}
}

func TestShutDownWakesGet(t *testing.T) {
	q := New(time.Millisecond, time.Second)
	done := make(chan bool)
	go func() { _, ok := q.Get(); done <- ok }()
	q.ShutDown()
	select {
	case ok := <-done:
		if ok {
			t.Error("Get after ShutDown returned ok")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Get did not return after ShutDown")
	}
}
