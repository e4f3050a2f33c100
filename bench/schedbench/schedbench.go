package schedbench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/paddock-dev/paddock/bench/internal/machine"
	"github.com/paddock-dev/paddock/bench/internal/mdreport"
	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/controller"
	"github.com/paddock-dev/paddock/core/server"
	"github.com/paddock-dev/paddock/internal/testcluster"
)

// Config configures a run. DefaultConfig returns B1's.
type Config struct {
	// Nodes is the number of simulated nodes (Node objects only).
	Nodes int
	// PrePlaced is the number of pods created already bound before the
	// burst.
	PrePlaced int
	// Pods is the number of pending pods of the burst.
	Pods int
	// Tenants is how many tenants the burst's pods are spread over. The
	// API server admits one tenant's pod creates one at a time (they
	// update the tenant's quota usage in the same transaction), so with
	// one tenant the creates, not the scheduler, would set the pace.
	Tenants int
	// Creators is the number of goroutines creating the burst's pods and
	// Conns the number of HTTP/2 connections they share.
	Creators, Conns int
	// Binders is the scheduler's most binds in flight, and the floor's
	// number of goroutines; 0 means the loop's default.
	Binders int
	// Procs is GOMAXPROCS during the run; 0 leaves it alone.
	Procs int
	// Timeout bounds the whole run.
	Timeout time.Duration
	// CPUProfile, when set, receives the CPU profile of the burst (the
	// one the CPU shares are read from).
	CPUProfile string
	// DataDir is where the run's temporary directory is made (it decides
	// the disk under etcd); "" means the system's.
	DataDir string
	// Write, when set, is a Markdown file (docs/benchmarks.md) in which
	// the run's B1 section is replaced, or appended when missing.
	Write string
	// Command is the command line recorded with the results.
	Command string
	// Out receives the report; nil means os.Stdout.
	Out io.Writer
	// Log receives progress; nil discards it.
	Log *slog.Logger
}

// DefaultConfig returns B1's configuration.
func DefaultConfig() Config {
	return Config{
		Nodes:     5000,
		PrePlaced: 1000,
		Pods:      10_000,
		Tenants:   10,
		Creators:  64,
		Conns:     4,
		Procs:     2,
		Timeout:   15 * time.Minute,
	}
}

// check validates cfg; errors name the field.
func (cfg *Config) check() error {
	switch {
	case cfg.Nodes < 1 || cfg.Nodes > 100_000:
		return fmt.Errorf("nodes: %d is not between 1 and 100000", cfg.Nodes)
	case cfg.PrePlaced < 0 || cfg.PrePlaced > 100*cfg.Nodes:
		return fmt.Errorf("pre-placed pods: %d is not between 0 and 100 per node", cfg.PrePlaced)
	case cfg.Pods < 1 || cfg.Pods > 1_000_000:
		return fmt.Errorf("pods: %d is not between 1 and 1000000", cfg.Pods)
	case cfg.PrePlaced+2*cfg.Pods+1 > maxPodsPerNode*cfg.Nodes:
		return fmt.Errorf("pods: %d pre-placed and twice %d pending (burst and backlog) do not fit on %d nodes of %d pods", cfg.PrePlaced, cfg.Pods, cfg.Nodes, maxPodsPerNode)
	case cfg.Tenants < 1 || cfg.Tenants > 1000:
		return fmt.Errorf("tenants: %d is not between 1 and 1000", cfg.Tenants)
	case cfg.Creators < 1 || cfg.Creators > 10_000:
		return fmt.Errorf("creators: %d is not between 1 and 10000", cfg.Creators)
	case cfg.Conns < 1 || cfg.Conns > cfg.Creators:
		return fmt.Errorf("conns: %d is not between 1 and the number of creators", cfg.Conns)
	case cfg.Binders < 0 || cfg.Binders > 10_000:
		return fmt.Errorf("binders: %d is not between 0 (the default) and 10000", cfg.Binders)
	case cfg.Procs < 0:
		return fmt.Errorf("procs: %d is negative", cfg.Procs)
	case cfg.Timeout <= 0:
		return fmt.Errorf("timeout: %v is not positive", cfg.Timeout)
	}
	return nil
}

// The simulated nodes and the pods, as B1 describes them.
const (
	racks          = 10
	maxPodsPerNode = 110
	nodeCPU        = "4"
	nodeMemory     = "32Gi"
	podCPU         = "100m"
	podMemory      = "500Mi"
	placedTenant   = "placed"
	warmupTenant   = "warmup"
)

func tenantOf(i, tenants int) string { return "bench-" + strconv.Itoa(i%tenants) }

// Run runs the benchmark and reports it to cfg.Out (and cfg.Write). It
// returns when the run is over or ctx ends, after everything it started
// has stopped and its temporary directory is gone.
func Run(ctx context.Context, cfg Config) (err error) {
	if err := cfg.check(); err != nil {
		return fmt.Errorf("schedbench: %w", err)
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Binders == 0 {
		cfg.Binders = controller.DefaultBinders
	}
	if cfg.Procs > 0 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(cfg.Procs))
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	root, err := os.MkdirTemp(cfg.DataDir, "paddock-b1-")
	if err != nil {
		return fmt.Errorf("schedbench: temporary directory: %w", err)
	}
	defer func() {
		if rerr := os.RemoveAll(root); rerr != nil && err == nil {
			err = fmt.Errorf("schedbench: remove %s: %w", root, rerr)
		}
	}()
	res := &results{cfg: cfg, started: time.Now(), machine: machine.Describe(ctx)}
	if err := res.runBurst(ctx, root); err != nil {
		return fmt.Errorf("schedbench: %w", err)
	}
	cfg.Log.Info("measuring the floor: raw etcd compare-and-swap updates", "keys", cfg.Pods, "goroutines", cfg.Binders)
	if res.floor, err = measureFloor(ctx, filepath.Join(root, "raw-etcd"), cfg.Pods, cfg.Binders, cfg.Log); err != nil {
		return fmt.Errorf("schedbench: floor: %w", err)
	}
	res.finished = time.Now()
	res.machine.LoadAfter = machine.LoadAvg()
	if err := mdreport.Publish(cfg.Out, cfg.Write, sectionName, res.markdown()); err != nil {
		return fmt.Errorf("schedbench: %w", err)
	}
	return nil
}

// runBurst starts the control plane and the scheduler, sets the cluster
// up, measures the burst and then the backlog.
func (res *results) runBurst(ctx context.Context, root string) (err error) {
	cfg := res.cfg
	// The control plane as `paddock server` runs it (embedded etcd, TLS,
	// authn, authz, admission, the audit log on disk), its controllers
	// off: the scheduling loop runs here.
	cp, err := testcluster.Launch(ctx, server.Config{DataDir: filepath.Join(root, "server"), Log: cfg.Log.With("component", "server"), Version: "paddock-bench"})
	if err != nil {
		return err
	}
	defer func() {
		if serr := cp.Stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	conns := make([]*client.Client, cfg.Conns) // each its own HTTP/2 connection
	for i := range conns {
		if conns[i], err = client.New(cp.AdminConfig); err != nil {
			return err
		}
	}
	if err := setUp(ctx, cfg, conns); err != nil {
		return err
	}

	rec := newRecorder(burstPrefix, cfg.Pods, cfg.Tenants)
	stopSched, err := startScheduler(ctx, cp.AdminConfig, cfg, rec)
	if err != nil {
		return err
	}
	defer func() {
		if serr := stopSched(); serr != nil && err == nil {
			err = serr
		}
	}()
	cfg.Log.Info("waiting for the scheduler to bind a warm-up pod")
	if _, err := conns[0].Create(ctx, newPod(warmupTenant, "warmup", "")); err != nil {
		return fmt.Errorf("create the warm-up pod: %w", err)
	}
	select {
	case <-rec.warm:
	case <-ctx.Done():
		return fmt.Errorf("the scheduler did not bind the warm-up pod: %w", ctx.Err())
	}

	cfg.Log.Info("burst", "pods", cfg.Pods, "creators", cfg.Creators, "tenants", cfg.Tenants)
	if res.burst, err = measure(ctx, cfg, rec, func(ctx context.Context) error {
		start := time.Now()
		err := createPods(ctx, cfg, conns, rec)
		res.createdIn = time.Since(start)
		cfg.Log.Info("all pods created; waiting for their bindings", "in", res.createdIn.Round(time.Millisecond), "bound", rec.count.Load())
		return err
	}); err != nil {
		return fmt.Errorf("burst: %w", err)
	}
	res.created, res.queued = rec.latencies()
	cfg.Log.Info("all pods bound", "in", res.burst.elapsed.Round(time.Millisecond))

	// The backlog: the scheduler stops, as many pods again wait, and a
	// new scheduler (as after a leader change) binds them.
	if err := stopSched(); err != nil {
		return err
	}
	backlog := newRecorder(backlogPrefix, cfg.Pods, cfg.Tenants)
	cfg.Log.Info("backlog: creating pending pods with no scheduler running", "pods", cfg.Pods)
	if err := createPods(ctx, cfg, conns, backlog); err != nil {
		return fmt.Errorf("backlog: %w", err)
	}
	if res.backlog, err = measure(ctx, cfg, backlog, func(ctx context.Context) error {
		stopSched, err = startScheduler(ctx, cp.AdminConfig, cfg, backlog)
		return err
	}); err != nil {
		return fmt.Errorf("backlog: %w", err)
	}
	res.backlogFirst = backlog.firstBound()
	cfg.Log.Info("backlog bound", "in", res.backlog.elapsed.Round(time.Millisecond))
	return res.verify(ctx, conns[0])
}

// startScheduler runs the scheduling loop with its own client, its
// goroutines labelled for the CPU profile, reporting bindings to rec,
// until the returned stop is called.
func startScheduler(ctx context.Context, admin *client.Config, cfg Config, rec *recorder) (stop func() error, err error) {
	c, err := client.New(admin)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go pprof.Do(ctx, pprof.Labels(cpuLabel, labelScheduler), func(ctx context.Context) {
		done <- controller.RunScheduler(ctx, c, controller.SchedulerConfig{Binders: cfg.Binders, Bound: rec.onBound}, cfg.Log.With("component", "scheduler"))
	})
	var once sync.Once
	return func() error {
		var err error
		once.Do(func() {
			cancel()
			if err = <-done; err != nil {
				err = fmt.Errorf("scheduler: %w", err)
			}
		})
		return err
	}, nil
}

// createPods creates rec's pending pods from cfg.Creators goroutines,
// their goroutines labelled for the CPU profile.
func createPods(ctx context.Context, cfg Config, conns []*client.Client, rec *recorder) error {
	var err error
	pprof.Do(ctx, pprof.Labels(cpuLabel, labelCreators), func(ctx context.Context) {
		err = each(ctx, cfg.Pods, cfg.Creators, func(w, i int) error {
			name := rec.name(i)
			if _, err := conns[w%len(conns)].Create(ctx, newPod(tenantOf(i, cfg.Tenants), name, "")); err != nil {
				return fmt.Errorf("create pod %s: %w", name, err)
			}
			rec.created[i].Store(time.Now().UnixNano())
			return nil
		})
	})
	return err
}

// phase is what one measured phase took: when it began, how long until
// its last pod was bound, the per-second placement samples, the process's
// CPU time and each pprof label's share of it (nil when the process was
// already being profiled).
type phase struct {
	began     time.Time
	elapsed   time.Duration
	samples   []float64
	cpu       time.Duration
	cpuShares map[string]float64
}

// measure runs start (which makes pods arrive, or the scheduler start)
// and waits until rec has seen every pod bound, sampling the bound count
// every second and profiling the process's CPU.
func measure(ctx context.Context, cfg Config, rec *recorder, start func(context.Context) error) (phase, error) {
	var ph phase
	var prof bytes.Buffer
	profiling := pprof.StartCPUProfile(&prof) == nil
	stopProfile := func() {
		if profiling {
			pprof.StopCPUProfile()
			profiling = false
		}
	}
	defer stopProfile()
	cpuBefore := processCPU()
	ph.began = time.Now()
	sampler := startSampler(ctx, &rec.count, rec.total)
	defer sampler.stop()
	if err := start(ctx); err != nil {
		return ph, err
	}
	select {
	case <-rec.done:
	case <-ctx.Done():
		return ph, fmt.Errorf("%d of %d pods bound before the run ended: %w", rec.count.Load(), rec.total, ctx.Err())
	}
	ph.elapsed = time.Since(ph.began)
	ph.cpu = processCPU() - cpuBefore
	ph.samples = sampler.stop()
	if profiling {
		stopProfile()
		shares, err := labelShares(prof.Bytes(), cpuLabel)
		if err != nil {
			return ph, fmt.Errorf("read the CPU profile: %w", err)
		}
		ph.cpuShares = shares
		if cfg.CPUProfile != "" && rec.prefix == burstPrefix {
			if err := os.WriteFile(cfg.CPUProfile, prof.Bytes(), 0o644); err != nil {
				return ph, fmt.Errorf("cpu profile: %w", err)
			}
		}
	}
	return ph, nil
}

// verify checks that every pod of the run is bound, and that no node
// holds more pods than it offers.
func (res *results) verify(ctx context.Context, c *client.Client) error {
	list, err := c.ListAll(ctx, podKind, "", client.ListOptions{Limit: 1000})
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	perNode := map[string]int{}
	for _, o := range list.Items {
		p := o.(*api.Pod)
		if p.Spec.NodeName == "" {
			return fmt.Errorf("pod %s/%s is not bound after the run", p.Metadata.Tenant, p.Metadata.Name)
		}
		perNode[p.Spec.NodeName]++
	}
	if want := res.cfg.PrePlaced + 2*res.cfg.Pods + 1; len(list.Items) != want {
		return fmt.Errorf("%d pods after the run, want %d", len(list.Items), want)
	}
	for n, k := range perNode {
		res.maxPerNode = max(res.maxPerNode, k)
		if k > maxPodsPerNode {
			return fmt.Errorf("node %s holds %d pods, more than its %d", n, k, maxPodsPerNode)
		}
	}
	res.nodesUsed = len(perNode)
	return nil
}

// recorder takes the times of one phase's pods, named prefix-NNNNNNN.
type recorder struct {
	prefix  string
	tenants int
	created []atomic.Int64 // UnixNano when each create returned
	bound   []atomic.Int64 // UnixNano when each binding was committed
	queued  []atomic.Int64 // UnixNano when the scheduler first queued it
	count   atomic.Int64   // pods bound
	total   int64
	warm    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// The phases' pod name prefixes.
const (
	burstPrefix   = "pod"
	backlogPrefix = "backlog"
)

func newRecorder(prefix string, pods, tenants int) *recorder {
	return &recorder{
		prefix: prefix, tenants: tenants, total: int64(pods),
		created: make([]atomic.Int64, pods), bound: make([]atomic.Int64, pods), queued: make([]atomic.Int64, pods),
		warm: make(chan struct{}), done: make(chan struct{}),
	}
}

func (r *recorder) name(i int) string { return podName(r.prefix, i) }

func podName(prefix string, i int) string { return fmt.Sprintf("%s-%07d", prefix, i) }

// index parses name.
func (r *recorder) index(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, r.prefix+"-")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(s)
	return i, err == nil && i >= 0 && i < len(r.bound)
}

// onBound is the scheduler's SchedulerConfig.Bound.
func (r *recorder) onBound(tenant, name, _ string, queued time.Time) {
	now := time.Now().UnixNano()
	if tenant == warmupTenant {
		r.once.Do(func() { close(r.warm) })
		return
	}
	i, ok := r.index(name)
	if !ok || tenant != tenantOf(i, r.tenants) || !r.bound[i].CompareAndSwap(0, now) {
		return
	}
	r.queued[i].Store(queued.UnixNano())
	if r.count.Add(1) == r.total {
		close(r.done)
	}
}

// firstBound returns when the first pod was bound.
func (r *recorder) firstBound() time.Time {
	var first int64
	for i := range r.bound {
		if b := r.bound[i].Load(); b != 0 && (first == 0 || b < first) {
			first = b
		}
	}
	return time.Unix(0, first)
}

// latencies returns each pod's time from its create returning, and from
// the scheduler queueing it, to its binding committed. A binding can be
// committed before its create's answer is read, when the client is slow
// to run: such latencies count as zero.
func (r *recorder) latencies() (created, queued []time.Duration) {
	for i := range r.bound {
		b := r.bound[i].Load()
		created = append(created, time.Duration(max(0, b-r.created[i].Load())))
		queued = append(queued, time.Duration(max(0, b-r.queued[i].Load())))
	}
	return created, queued
}

// sampler records the placement throughput every second, as
// scheduler_perf's throughput collector does.
type sampler struct {
	stopc   chan struct{}
	done    chan struct{}
	samples []float64
}

func startSampler(ctx context.Context, count *atomic.Int64, total int64) *sampler {
	s := &sampler{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var last int64
		var lastAt time.Time
		started, skipped := false, 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.stopc:
				return
			case now := <-tick.C:
				n := count.Load()
				switch {
				case n == 0:
					continue
				case !started:
					// The first sample is skipped: creating and
					// sampling start independently.
					started, last, lastAt = true, n, now
					continue
				case n == last:
					skipped++
					continue
				}
				rate := float64(n-last) / now.Sub(lastAt).Seconds()
				for range skipped + 1 {
					s.samples = append(s.samples, rate)
				}
				last, lastAt, skipped = n, now, 0
				if n >= total {
					return
				}
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the samples.
func (s *sampler) stop() []float64 {
	select {
	case <-s.stopc:
	default:
		close(s.stopc)
	}
	<-s.done
	return s.samples
}

// processCPU returns the user and system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var podKind, _ = api.KindFor("pods")

// newPod returns a pod of B1: one container requesting 100m and 500Mi,
// bound to node when it is not empty.
func newPod(tenant, name, node string) *api.Pod {
	return &api.Pod{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Pod"},
		Metadata: api.ObjectMeta{Name: name, Tenant: tenant, Labels: map[string]string{"app": "b1"}},
		Spec: api.PodSpec{
			NodeName: node,
			Containers: []api.Container{{
				Name: "c", Image: "busybox",
				Resources: api.ResourceRequirements{Requests: api.ResourceList{
					api.ResourceCPU: api.MustParseQuantity(podCPU), api.ResourceMemory: api.MustParseQuantity(podMemory),
				}},
			}},
		},
	}
}

// newNode returns simulated node i: Ready, 4 cpu, 32Gi, 110 pods, runc,
// in one of 10 racks.
func newNode(i int) *api.Node {
	now := api.NewTime(time.Now())
	alloc := api.ResourceList{
		api.ResourceCPU:    api.MustParseQuantity(nodeCPU),
		api.ResourceMemory: api.MustParseQuantity(nodeMemory),
		api.ResourcePods:   api.MustParseQuantity(strconv.Itoa(maxPodsPerNode)),
	}
	return &api.Node{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Node"},
		Metadata: api.ObjectMeta{Name: nodeName(i), Labels: map[string]string{"topology.paddock.dev/rack": "rack-" + strconv.Itoa(i%racks)}},
		Status: api.NodeStatus{
			Capacity: alloc, Allocatable: alloc, RuntimeClasses: []string{"runc"},
			Conditions: []api.Condition{{Type: "Ready", Status: "True", Reason: "Simulated", LastHeartbeatTime: now, LastTransitionTime: now}},
		},
	}
}

func nodeName(i int) string { return fmt.Sprintf("node-%05d", i) }

// setUp makes the tenants, the nodes and the pre-placed pods.
func setUp(ctx context.Context, cfg Config, conns []*client.Client) error {
	tenants := []string{placedTenant, warmupTenant}
	for i := range cfg.Tenants {
		tenants = append(tenants, tenantOf(i, cfg.Tenants))
	}
	for _, t := range tenants {
		tn := &api.Tenant{TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Tenant"}, Metadata: api.ObjectMeta{Name: t}}
		if _, err := conns[0].Create(ctx, tn); err != nil {
			return fmt.Errorf("create tenant %s: %w", t, err)
		}
	}
	cfg.Log.Info("creating nodes", "nodes", cfg.Nodes)
	if err := each(ctx, cfg.Nodes, cfg.Creators, func(w, i int) error {
		_, err := conns[w%len(conns)].Create(ctx, newNode(i))
		return err
	}); err != nil {
		return fmt.Errorf("create nodes: %w", err)
	}
	cfg.Log.Info("creating pre-placed pods", "pods", cfg.PrePlaced)
	if err := each(ctx, cfg.PrePlaced, cfg.Creators, func(w, i int) error {
		_, err := conns[w%len(conns)].Create(ctx, newPod(placedTenant, podName(placedTenant, i), nodeName(i*cfg.Nodes/max(1, cfg.PrePlaced)%cfg.Nodes)))
		return err
	}); err != nil {
		return fmt.Errorf("create pre-placed pods: %w", err)
	}
	return nil
}
