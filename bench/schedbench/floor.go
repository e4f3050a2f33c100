package schedbench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// floorResult is the raw etcd compare-and-swap floor.
type floorResult struct {
	Updates    int
	Goroutines int
	Elapsed    time.Duration
	Latencies  []time.Duration
}

// Rate is the floor's updates per second.
func (f floorResult) Rate() float64 { return float64(f.Updates) / f.Elapsed.Seconds() }

// measureFloor starts an etcd member in dir with the store's settings,
// puts n pending pods' JSON under the store's keys, then swaps each for
// its bound version with a transaction comparing the key's mod revision
// (what a binding commits), from workers goroutines.
func measureFloor(ctx context.Context, dir string, n, workers int, log *slog.Logger) (floorResult, error) {
	e, err := store.StartEmbedded(ctx, store.EmbeddedConfig{Dir: dir, Logger: log.With("component", "raw-etcd")})
	if err != nil {
		return floorResult{}, err
	}
	defer e.Close()
	kv := e.Client()
	keys := store.New(kv)
	pendingValue, boundValue, err := floorValues()
	if err != nil {
		return floorResult{}, err
	}
	key := func(i int) string { return keys.Key(podKind, tenantOf(i, 1), podName(burstPrefix, i)) }

	revs := make([]int64, n)
	if err := each(ctx, n, workers, func(_, i int) error {
		resp, err := kv.Put(ctx, key(i), pendingValue)
		if err != nil {
			return err
		}
		revs[i] = resp.Header.Revision
		return nil
	}); err != nil {
		return floorResult{}, fmt.Errorf("load: %w", err)
	}

	res := floorResult{Updates: n, Goroutines: workers, Latencies: make([]time.Duration, n)}
	start := time.Now()
	if err := each(ctx, n, workers, func(_, i int) error {
		t0 := time.Now()
		resp, err := kv.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key(i)), "=", revs[i])).
			Then(clientv3.OpPut(key(i), boundValue)).
			Commit()
		if err != nil {
			return err
		}
		if !resp.Succeeded {
			return fmt.Errorf("compare-and-swap of %s failed: revision moved", key(i))
		}
		res.Latencies[i] = time.Since(t0)
		return nil
	}); err != nil {
		return floorResult{}, fmt.Errorf("compare-and-swap: %w", err)
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// floorValues returns the stored JSON of one of the burst's pods before
// and after its binding, as the store writes them.
func floorValues() (pending, bound string, err error) {
	p := newPod(tenantOf(0, 1), podName(burstPrefix, 0), "")
	api.Default(p)
	p.Spec.RuntimeClassName = "runc"
	p.Metadata.UID, p.Metadata.Generation, p.Metadata.CreationTimestamp = store.NewUID(), 1, api.NewTime(time.Now())
	b, err := json.Marshal(p)
	if err != nil {
		return "", "", err
	}
	p.Spec.NodeName = nodeName(0)
	p.Status.Conditions = []api.Condition{{Type: "PodScheduled", Status: "True", LastTransitionTime: api.NewTime(time.Now())}}
	bb, err := json.Marshal(p)
	if err != nil {
		return "", "", err
	}
	return string(b), string(bb), nil
}

// each runs f(w, i) for i in 0..n-1 from workers goroutines (w numbers
// the goroutine) and returns the first error; the others stop.
func each(ctx context.Context, n, workers int, f func(w, i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for w := range min(workers, max(n, 1)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(w, i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n))
					return
				}
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}
