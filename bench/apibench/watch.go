package apibench

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
)

// Annotations the watch writer puts on each update.
const (
	sentAnnotation = "bench.paddock.dev/sent" // time.Now().UnixNano() just before the update is sent
	repAnnotation  = "bench.paddock.dev/rep"  // 0 for the warm-up, else the repetition
)

// watchResult is what the watch phase measured.
type watchResult struct {
	Watchers int
	Conns    int
	Rate     int
	Open     time.Duration // time to open every watcher
	Resumed  int64         // streams the server ended and the watcher resumed
	Mem      watchMemory
	Reps     []watchRep
}

// watchMemory is the memory the open watchers cost. The API server, its
// etcd and the watch clients live in one process, so the whole-process
// figures include the client side; the split by owner is an estimate
// from the sampled heap profile and the goroutines' stacks.
type watchMemory struct {
	HeapInuse  int64 // whole process, after minus before
	StackInuse int64
	Goroutines int
	// Heap and goroutines by owner: "server" (API server, store, etcd,
	// HTTP server), "client" (core/client, HTTP client, the bench's own
	// consumers) and "other"; and by owner and site ("server: FUNC").
	Heap      map[string]int64
	Goroutine map[string]int
}

// watchRep is one repetition of the watch phase.
type watchRep struct {
	Writes    int
	Elapsed   time.Duration
	Expected  int64
	Delivered int64
	Lat       latencies
}

// maxResumes bounds how often one watcher resumes a stream the server
// ended.
const maxResumes = 100

// watchSample is one delivery seen by one watcher.
type watchSample struct {
	rep int32
	lat time.Duration
}

func watchObjectName(i int) string { return "watch-" + strconv.Itoa(i) }

// watch measures watch fan-out: cfg.Watchers watches on watchTenant's
// ConfigMaps, then a writer updating them at cfg.WatchRate per second.
func (b *bench) watch(ctx context.Context) (*watchResult, error) {
	cfg, e := b.cfg, b.env
	res := &watchResult{Watchers: cfg.Watchers, Conns: len(e.watchEdit), Rate: cfg.WatchRate}
	writer := e.watchEdit[0]
	for i := range watchObjects {
		octx, cancel := context.WithTimeout(ctx, opTimeout)
		_, err := writer.Create(octx, e.shape.configMap(watchTenant, watchObjectName(i)))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("create %s: %w", watchObjectName(i), err)
		}
	}

	// Record every allocation while the watchers open, so that the
	// split of their heap by owner is exact rather than sampled. Both
	// readings scale the older, sampled records alike, so they cancel
	// out in the difference.
	oldRate := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = oldRate }()
	before := takeMemory()
	wctx, stopWatchers := context.WithCancel(ctx)
	defer stopWatchers()
	var (
		wg        sync.WaitGroup
		delivered = make([]atomic.Int64, cfg.Reps+1)
		samples   = make([][]watchSample, cfg.Watchers)
		failed    watchFailure
		resumed   atomic.Int64
		stopping  atomic.Bool
		// watchers[i] is watcher i's current stream; its consumer
		// replaces it when it resumes a stream the server ended.
		watchers = make([]atomic.Pointer[client.Watcher], cfg.Watchers)
	)
	stopAll := sync.OnceFunc(func() {
		stopping.Store(true)
		for i := range watchers {
			if w := watchers[i].Load(); w != nil {
				w.Stop()
			}
		}
		stopWatchers()
		wg.Wait()
	})
	defer stopAll()
	open := func(i int, rv string) (*client.Watcher, error) {
		// The watch's context is the stream's: bound the opening
		// with a timer instead of a deadline.
		ictx, icancel := context.WithCancel(wctx)
		timer := time.AfterFunc(opTimeout, icancel)
		w, err := e.watchEdit[i%len(e.watchEdit)].Watch(ictx, configMapKind, watchTenant, client.WatchOptions{ResourceVersion: rv})
		timer.Stop()
		if err != nil {
			icancel()
			return nil, fmt.Errorf("open watcher %d: %w", i, err)
		}
		return w, nil
	}
	consume := func(i int, w *client.Watcher) {
		lastRV := ""
		for resumes := 0; ; resumes++ {
			for ev := range w.Events() {
				now := time.Now()
				if ev.Type == api.Error {
					if !stopping.Load() {
						failed.set(fmt.Errorf("watcher %d: error event: %s", i, ev.Object.(*api.Status).Message))
					}
					w.Stop()
					return
				}
				lastRV = ev.Object.GetObjectMeta().ResourceVersion
				if ev.Type != api.Modified {
					continue
				}
				a := ev.Object.GetObjectMeta().Annotations
				sent, err1 := strconv.ParseInt(a[sentAnnotation], 10, 64)
				rep, err2 := strconv.Atoi(a[repAnnotation])
				if err1 != nil || err2 != nil || rep < 0 || rep > cfg.Reps {
					continue
				}
				samples[i] = append(samples[i], watchSample{rep: int32(rep), lat: now.Sub(time.Unix(0, sent))})
				delivered[rep].Add(1)
			}
			switch err := w.Err(); {
			case stopping.Load() || wctx.Err() != nil:
				return
			case err != nil:
				failed.set(fmt.Errorf("watcher %d: %w", i, err))
				return
			case resumes >= maxResumes:
				failed.set(fmt.Errorf("watcher %d: the server ended the stream %d times", i, resumes+1))
				return
			}
			// The server ended the stream (it cuts off a watcher
			// that falls too far behind): resume as a client does.
			nw, err := open(i, lastRV)
			if err != nil {
				if !stopping.Load() {
					failed.set(err)
				}
				return
			}
			resumed.Add(1)
			watchers[i].Store(nw)
			w = nw
		}
	}
	e.log.Info("opening watchers", "count", cfg.Watchers, "connections", len(e.watchEdit))
	openStart := time.Now()
	for i := range cfg.Watchers {
		w, err := open(i, "")
		if err != nil {
			return nil, err
		}
		watchers[i].Store(w)
		wg.Go(func() { consume(i, w) })
	}
	res.Open = time.Since(openStart)
	// Let the streams settle before the second memory reading.
	if err := sleep(ctx, time.Second); err != nil {
		return nil, err
	}
	after := takeMemory()
	runtime.MemProfileRate = oldRate
	res.Mem = after.minus(before)
	e.log.Info("watchers open", "count", cfg.Watchers, "took", res.Open,
		"heapPerWatcher", res.Mem.HeapInuse/int64(cfg.Watchers), "goroutines", res.Mem.Goroutines)

	// Deliveries that the server cannot keep up with pile up; wait
	// for them (boundedly) before the next repetition starts.
	drain := max(30*time.Second, 6*cfg.Duration)
	run := func(rep int, d time.Duration) (watchRep, error) {
		r, err := b.updateAtRate(ctx, writer, rep, d)
		if err != nil {
			return r, err
		}
		r.Expected = int64(r.Writes) * int64(cfg.Watchers)
		deadline := time.Now().Add(drain)
		for delivered[rep].Load() < r.Expected && time.Now().Before(deadline) {
			if err := failed.get(); err != nil {
				return r, err
			}
			if err := sleep(ctx, 10*time.Millisecond); err != nil {
				return r, err
			}
		}
		r.Delivered = delivered[rep].Load()
		return r, nil
	}
	if cfg.Warmup > 0 {
		e.log.Info("warming up", "workload", "watch", "for", cfg.Warmup)
		if _, err := run(0, cfg.Warmup); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	for rep := 1; rep <= cfg.Reps; rep++ {
		r, err := run(rep, cfg.Duration)
		if err != nil {
			return nil, err
		}
		res.Reps = append(res.Reps, r)
		e.log.Info("measured", "workload", "watch", "rep", rep, "writes", r.Writes,
			"delivered", r.Delivered, "expected", r.Expected)
	}

	// Stop the watchers; then their samples are ours to read.
	stopAll()
	if err := failed.get(); err != nil {
		return nil, err
	}
	res.Resumed = resumed.Load()
	byRep := make([][]time.Duration, cfg.Reps+1)
	for _, s := range samples {
		for _, x := range s {
			byRep[x.rep] = append(byRep[x.rep], x.lat)
		}
	}
	for i := range res.Reps {
		res.Reps[i].Lat = summarize(byRep[i+1])
	}
	return res, nil
}

// watchFailure keeps the first failure of any watcher.
type watchFailure struct {
	mu  sync.Mutex
	err error
}

func (f *watchFailure) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

func (f *watchFailure) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// updateAtRate updates the watch objects in turn at cfg.WatchRate per
// second for d, each update carrying its send time and rep. A writer that
// falls behind does not catch up in bursts; it stops when d is over.
func (b *bench) updateAtRate(ctx context.Context, c *client.Client, rep int, d time.Duration) (watchRep, error) {
	var r watchRep
	interval := time.Second / time.Duration(b.cfg.WatchRate)
	n := max(1, int(d/interval))
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := sleep(ctx, time.Until(start.Add(time.Duration(i)*interval))); err != nil {
			return r, err
		}
		if i > 0 && time.Since(start) >= d {
			break
		}
		cm := b.env.shape.configMap(watchTenant, watchObjectName(i%watchObjects))
		cm.Metadata.Annotations = map[string]string{
			sentAnnotation: strconv.FormatInt(time.Now().UnixNano(), 10),
			repAnnotation:  strconv.Itoa(rep),
		}
		octx, cancel := context.WithTimeout(ctx, opTimeout)
		_, err := c.Update(octx, cm)
		cancel()
		if err != nil {
			return r, fmt.Errorf("update %s: %w", cm.Metadata.Name, err)
		}
		r.Writes++
	}
	r.Elapsed = time.Since(start)
	return r, nil
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// memorySnapshot is the process's memory at one moment.
type memorySnapshot struct {
	heapInuse, stackInuse int64
	goroutines            int
	heap                  map[string]int64
	byOwner               map[string]int
}

// takeMemory collects garbage and reads the process's memory, with the
// heap (from the sampled heap profile) and goroutines split by owner.
func takeMemory() memorySnapshot {
	runtime.GC()
	runtime.GC() // the heap profile lags one cycle
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memorySnapshot{
		heapInuse:  int64(ms.HeapInuse),
		stackInuse: int64(ms.StackInuse),
		goroutines: runtime.NumGoroutine(),
		heap:       heapByOwner(),
		byOwner:    goroutinesByOwner(),
	}
}

func (a memorySnapshot) minus(b memorySnapshot) watchMemory {
	m := watchMemory{
		HeapInuse:  a.heapInuse - b.heapInuse,
		StackInuse: a.stackInuse - b.stackInuse,
		Goroutines: a.goroutines - b.goroutines,
		Heap:       map[string]int64{},
		Goroutine:  map[string]int{},
	}
	for k, v := range a.heap {
		m.Heap[k] = v - b.heap[k]
	}
	for k, v := range a.byOwner {
		m.Goroutine[k] = v - b.byOwner[k]
	}
	return m
}

// Function-name prefixes that tell who a stack belongs to; the innermost
// matching frame decides.
var (
	serverFrames = []string{
		"github.com/paddock-dev/paddock/core/apiserver.",
		"github.com/paddock-dev/paddock/core/store.",
		"github.com/paddock-dev/paddock/core/server.",
		"go.etcd.io/",
		"google.golang.org/grpc",
		"net/http.(*http2serverConn).",
		"net/http.(*http2Server).",
		"net/http.(*http2responseWriter",
		"net/http.(*conn).",
		"net/http.(*Server).",
	}
	clientFrames = []string{
		"github.com/paddock-dev/paddock/core/client.",
		"github.com/paddock-dev/paddock/bench/apibench.",
		"net/http.(*Client).",
		"net/http.(*Transport).",
		"net/http.(*persistConn).",
		"net/http.(*http2Transport).",
		"net/http.(*http2ClientConn).",
		"net/http.(*http2clientStream).",
		"net/http.(*http2clientConnReadLoop).",
	}
)

// ownerOf returns who a stack belongs to and the frame that decided it.
func ownerOf(stack []uintptr) (owner, site string) {
	frames := runtime.CallersFrames(stack)
	for {
		f, more := frames.Next()
		for _, p := range serverFrames {
			if strings.HasPrefix(f.Function, p) {
				return "server", f.Function
			}
		}
		for _, p := range clientFrames {
			if strings.HasPrefix(f.Function, p) {
				return "client", f.Function
			}
		}
		if !more {
			return "other", f.Function
		}
	}
}

// heapByOwner returns the in-use heap by owner and by owner and the frame
// that decided it ("server: FUNC"), from the heap profile scaled as
// runtime/pprof scales it.
func heapByOwner() map[string]int64 {
	var recs []runtime.MemProfileRecord
	n, _ := runtime.MemProfile(nil, true)
	for range 10 {
		recs = make([]runtime.MemProfileRecord, n+64)
		var ok bool
		if n, ok = runtime.MemProfile(recs, true); ok {
			recs = recs[:n]
			break
		}
	}
	rate := float64(runtime.MemProfileRate)
	out := map[string]int64{}
	for _, r := range recs {
		if r.InUseBytes() <= 0 || r.AllocObjects == 0 {
			continue
		}
		scale := 1.0
		if rate > 1 {
			avg := float64(r.AllocBytes) / float64(r.AllocObjects)
			scale = 1 / (1 - math.Exp(-avg/rate))
		}
		owner, site := ownerOf(r.Stack())
		n := int64(float64(r.InUseBytes()) * scale)
		out[owner] += n
		out[owner+": "+site] += n
	}
	return out
}

// goroutinesByOwner counts the goroutines by owner.
func goroutinesByOwner() map[string]int {
	var recs []runtime.StackRecord
	n, _ := runtime.GoroutineProfile(nil)
	for range 10 {
		recs = make([]runtime.StackRecord, n+64)
		var ok bool
		if n, ok = runtime.GoroutineProfile(recs); ok {
			recs = recs[:n]
			break
		}
	}
	out := map[string]int{}
	for _, r := range recs {
		owner, site := ownerOf(r.Stack())
		out[owner]++
		out[owner+": "+site]++
	}
	return out
}
