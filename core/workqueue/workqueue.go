// Package workqueue is the queue of keys that controllers, the scheduler
// loop and the node agent reconcile: a key waiting in the queue is there
// once however often it is added, a key being processed is never handed
// to two workers at once (an add while it is processed queues it again
// for after), and failures are retried with per-key exponential back-off.
package workqueue

import (
	"container/heap"
	"sync"
	"time"
)

// Queue is a deduplicating, rate-limited work queue of string keys. The
// zero value is not usable; call New.
type Queue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	queue      []string
	queued     map[string]bool // waiting in queue
	processing map[string]bool
	dirty      map[string]bool // added while processing
	delayed    delayHeap
	failures   map[string]int
	timer      *time.Timer
	shutdown   bool

	base, max time.Duration
	now       func() time.Time
}

// New returns a queue whose retries back off from base, doubling up to
// max.
func New(base, max time.Duration) *Queue {
	q := &Queue{
		queued:     map[string]bool{},
		processing: map[string]bool{},
		dirty:      map[string]bool{},
		failures:   map[string]int{},
		base:       base,
		max:        max,
		now:        time.Now,
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Add queues key now.
func (q *Queue) Add(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(key)
}

func (q *Queue) addLocked(key string) {
	if q.shutdown {
		return
	}
	if q.processing[key] {
		q.dirty[key] = true
		return
	}
	if q.queued[key] {
		return
	}
	q.queued[key] = true
	q.queue = append(q.queue, key)
	q.cond.Signal()
}

// AddAfter queues key once d has passed (now if d ≤ 0). An earlier
// pending AddAfter of the same key wins.
func (q *Queue) AddAfter(key string, d time.Duration) {
	if d <= 0 {
		q.Add(key)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shutdown {
		return
	}
	at := q.now().Add(d)
	heap.Push(&q.delayed, delayed{key: key, at: at})
	q.armLocked()
}

// Retry queues key after its back-off, which doubles with every Retry
// until Forget.
func (q *Queue) Retry(key string) time.Duration {
	q.mu.Lock()
	n := q.failures[key]
	q.failures[key] = n + 1
	q.mu.Unlock()
	d := q.base << min(n, 30)
	if d > q.max || d <= 0 {
		d = q.max
	}
	q.AddAfter(key, d)
	return d
}

// Forget resets key's back-off after a success.
func (q *Queue) Forget(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.failures, key)
}

// Failures is how often key was retried since its last Forget.
func (q *Queue) Failures(key string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.failures[key]
}

// Get waits for a key and marks it processing; the caller must call Done
// with it. ok is false once the queue is shut down.
func (q *Queue) Get() (key string, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.queue) == 0 && !q.shutdown {
		q.cond.Wait()
	}
	if q.shutdown {
		return "", false
	}
	key, q.queue = q.queue[0], q.queue[1:]
	delete(q.queued, key)
	q.processing[key] = true
	return key, true
}

// Done ends the processing of key; if it was added meanwhile it is
// queued again.
func (q *Queue) Done(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, key)
	if q.dirty[key] {
		delete(q.dirty, key)
		q.addLocked(key)
	}
}

// Len is the number of keys waiting (not counting delayed ones).
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.queue)
}

// ShutDown wakes every Get with ok false and drops what is queued.
func (q *Queue) ShutDown() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.shutdown = true
	if q.timer != nil {
		q.timer.Stop()
	}
	q.cond.Broadcast()
}

// armLocked sets the timer for the earliest delayed key.
func (q *Queue) armLocked() {
	if len(q.delayed) == 0 {
		return
	}
	d := q.delayed[0].at.Sub(q.now())
	if q.timer == nil {
		q.timer = time.AfterFunc(d, q.fire)
		return
	}
	q.timer.Reset(d)
}

// fire moves the delayed keys that are due into the queue.
func (q *Queue) fire() {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	for len(q.delayed) > 0 && !q.delayed[0].at.After(now) {
		q.addLocked(heap.Pop(&q.delayed).(delayed).key)
	}
	if !q.shutdown {
		q.armLocked()
	}
}

type delayed struct {
	key string
	at  time.Time
}

type delayHeap []delayed

func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h delayHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)        { *h = append(*h, x.(delayed)) }
func (h *delayHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
