package apibench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/server"
	"github.com/paddock-dev/paddock/core/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Phase names, in the order they run.
const (
	PhasePutSmall = "put-small" // raw etcd puts, 8-byte keys, 256-byte values
	PhaseCreate   = "create"    // raw etcd puts of API-shaped objects vs API creates
	PhaseGet      = "get"       // raw etcd gets vs API gets
	PhaseWatch    = "watch"     // watch fan-out
)

// AllPhases lists every phase.
var AllPhases = []string{PhasePutSmall, PhaseCreate, PhaseGet, PhaseWatch}

// Config configures a run. DefaultConfig returns the values of B4.
type Config struct {
	// DataDir is where the run's temporary directory is made (it decides
	// the disk under etcd); "" means the system's temporary directory.
	DataDir string
	// Duration is how long each repetition of each workload runs;
	// Warmup how long each workload runs, unmeasured, before its first
	// repetition.
	Duration, Warmup time.Duration
	// Reps is the number of repetitions.
	Reps int
	// Clients are the concurrency levels of the throughput phases.
	Clients []int
	// Conns is how many HTTP/2 connections (client.Client values) the
	// API workloads spread their clients and watchers over.
	Conns int
	// Watchers is the number of watch streams of the watch phase and
	// WatchRate the updates per second its writer makes.
	Watchers  int
	WatchRate int
	// ObjectSize is the size in bytes of the stored JSON of the objects
	// the API workloads write, and of the values of the matching raw
	// puts.
	ObjectSize int
	// GetObjects is how many objects the get phase reads from.
	GetObjects int
	// MaxOps bounds the operations of one run of one workload.
	MaxOps int
	// FsyncSamples is the number of fdatasync calls of the disk probe.
	FsyncSamples int
	// Procs is GOMAXPROCS during the run; 0 leaves it alone.
	Procs int
	// Phases selects what runs; nil means AllPhases.
	Phases []string
	// Workloads, when set, narrows the throughput phases to the
	// workloads with these IDs (e.g. "api-create-edit", to profile it
	// alone); the others, floors included, are skipped.
	Workloads []string
	// CPUProfile, when set, receives a CPU profile of the measured
	// phases (warm-ups included, setup excluded).
	CPUProfile string
	// Write, when set, is a Markdown file (docs/benchmarks.md) in which
	// the run's section is replaced, or appended when missing.
	Write string
	// Command is the command line recorded with the results.
	Command string
	// Out receives the results table; nil means os.Stdout.
	Out io.Writer
	// Log receives progress; nil discards it.
	Log *slog.Logger
}

// DefaultConfig returns B4's configuration.
func DefaultConfig() Config {
	return Config{
		Duration:     10 * time.Second,
		Warmup:       2 * time.Second,
		Reps:         5,
		Clients:      []int{1, 64},
		Conns:        8,
		Watchers:     1000,
		WatchRate:    100,
		ObjectSize:   1024,
		GetObjects:   1000,
		MaxOps:       2_000_000,
		FsyncSamples: 1000,
		Procs:        2,
	}
}

func (cfg *Config) check() error {
	switch {
	case cfg.Duration <= 0:
		return errors.New("duration must be positive")
	case cfg.Warmup < 0:
		return errors.New("warmup must not be negative")
	case cfg.Reps < 1:
		return errors.New("reps must be at least 1")
	case len(cfg.Clients) == 0:
		return errors.New("clients: name at least one concurrency level")
	case cfg.Conns < 1:
		return errors.New("conns must be at least 1")
	case cfg.ObjectSize < 200 || cfg.ObjectSize > 1<<20:
		return errors.New("object size must be between 200 bytes and 1 MiB")
	case cfg.GetObjects < 1:
		return errors.New("get objects must be at least 1")
	case cfg.MaxOps < 1:
		return errors.New("max ops must be at least 1")
	case cfg.Procs < 0:
		return errors.New("procs must not be negative")
	}
	for _, c := range cfg.Clients {
		if c < 1 || c > 10_000 {
			return fmt.Errorf("clients: %d is not between 1 and 10000", c)
		}
	}
	for _, p := range cfg.Phases {
		if !slices.Contains(AllPhases, p) {
			return fmt.Errorf("phase %q: want one of %s", p, strings.Join(AllPhases, ", "))
		}
	}
	if cfg.runs(PhaseWatch) && (cfg.Watchers < 1 || cfg.WatchRate < 1 || cfg.WatchRate > 10_000) {
		return errors.New("the watch phase needs at least 1 watcher and a rate between 1 and 10000 updates/s")
	}
	return nil
}

func (cfg *Config) runs(phase string) bool {
	return len(cfg.Phases) == 0 || slices.Contains(cfg.Phases, phase)
}

// Tenants and objects of the run.
const (
	benchTenant = "bench"       // creates and gets
	watchTenant = "bench-watch" // the watch phase
	// watchObjects is how many objects the watch writer updates in turn.
	watchObjects = 10
)

var configMapKind, _ = api.KindFor("configmaps")

// Run runs the benchmark and reports it to cfg.Out (and cfg.Write). It
// returns when the run is over or ctx ends, after everything it started
// has stopped and its temporary directory is gone.
func Run(ctx context.Context, cfg Config) (err error) {
	if err := cfg.check(); err != nil {
		return fmt.Errorf("apibench: %w", err)
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Procs > 0 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(cfg.Procs))
	}
	root, err := os.MkdirTemp(cfg.DataDir, "paddock-bench-")
	if err != nil {
		return fmt.Errorf("apibench: temporary directory: %w", err)
	}
	defer func() {
		if rerr := os.RemoveAll(root); rerr != nil && err == nil {
			err = fmt.Errorf("apibench: remove %s: %w", root, rerr)
		}
	}()

	res := &results{cfg: cfg, started: time.Now()}
	res.machine = describeMachine(ctx, root)
	cfg.Log.Info("probing the disk", "dir", root, "fdatasyncs", cfg.FsyncSamples)
	if res.machine.Fsync, err = probeFsync(ctx, root, cfg.FsyncSamples); err != nil {
		return fmt.Errorf("apibench: %w", err)
	}

	e, err := startEnv(ctx, cfg, root)
	if err != nil {
		return fmt.Errorf("apibench: %w", err)
	}
	defer func() {
		if cerr := e.close(); cerr != nil && err == nil {
			err = fmt.Errorf("apibench: %w", cerr)
		}
	}()

	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return fmt.Errorf("apibench: cpu profile: %w", err)
		}
		defer func() {
			if cerr := f.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("apibench: cpu profile: %w", cerr)
			}
		}()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("apibench: cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	res.objectBytes = len(e.shape.value)
	b := &bench{cfg: cfg, env: e, res: res}
	for _, phase := range AllPhases {
		if !cfg.runs(phase) {
			continue
		}
		var err error
		switch phase {
		case PhasePutSmall:
			err = b.putSmall(ctx)
		case PhaseCreate:
			err = b.create(ctx)
		case PhaseGet:
			err = b.get(ctx)
		case PhaseWatch:
			res.watch, err = b.watch(ctx)
		}
		if err != nil {
			return fmt.Errorf("apibench: phase %s: %w", phase, err)
		}
	}
	pprof.StopCPUProfile()
	res.finished = time.Now()
	res.machine.LoadAfter = loadAvg()

	report := res.markdown()
	if _, err := io.WriteString(cfg.Out, report); err != nil {
		return err
	}
	if cfg.Write != "" {
		if err := writeSection(cfg.Write, res.section(report)); err != nil {
			return fmt.Errorf("apibench: --write: %w", err)
		}
		cfg.Log.Info("results written", "file", cfg.Write)
	}
	return nil
}

// env is what the workloads run against.
type env struct {
	log *slog.Logger

	stopServer context.CancelFunc
	serverDone chan error

	raw   *store.Embedded
	rawKV *clientv3.Client

	admin     []*client.Client // cluster-admin, one per connection
	edit      []*client.Client // edit in benchTenant
	watchEdit []*client.Client // edit in watchTenant

	shape objectShape
}

// startEnv starts the API server (as the product does) and the raw etcd
// member, and makes the tenants and tokens.
func startEnv(ctx context.Context, cfg Config, root string) (_ *env, err error) {
	e := &env{log: cfg.Log}
	defer func() {
		if err != nil {
			_ = e.close()
		}
	}()

	// The API server: embedded etcd, TLS, authn, authz, admission and
	// an audit log, exactly as `paddock server` runs them.
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	e.stopServer, e.serverDone = stop, make(chan error, 1)
	ready := make(chan string, 1)
	go func() {
		e.serverDone <- server.Run(sctx, server.Config{
			DataDir: filepath.Join(root, "api"),
			Listen:  "127.0.0.1:0",
			Log:     cfg.Log.With("component", "server"),
			Version: "paddock-bench",
			Ready:   func(adminConfig string) { ready <- adminConfig },
		})
	}()
	var adminConf string
	select {
	case adminConf = <-ready:
	case err := <-e.serverDone:
		e.serverDone <- err // for close
		return nil, fmt.Errorf("API server: %w", err)
	case <-time.After(2 * time.Minute):
		return nil, errors.New("API server: not ready after 2 minutes")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	admin, err := client.LoadConfig(adminConf)
	if err != nil {
		return nil, err
	}
	cfg.Log.Info("API server ready", "url", admin.Server)

	// The floor: a second member with the same configuration in its own
	// directory on the same disk.
	if e.raw, err = store.StartEmbedded(ctx, store.EmbeddedConfig{
		Dir:    filepath.Join(root, "raw-etcd"),
		Logger: cfg.Log.With("component", "raw-etcd"),
	}); err != nil {
		return nil, fmt.Errorf("raw etcd: %w", err)
	}
	e.rawKV = e.raw.Client()

	if e.admin, err = clients(admin, cfg.Conns); err != nil {
		return nil, err
	}
	e.shape = newObjectShape(cfg.ObjectSize)

	// Tenants and their edit tokens, through the API.
	setupCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, t := range []struct {
		name string
		dst  *[]*client.Client
	}{{benchTenant, &e.edit}, {watchTenant, &e.watchEdit}} {
		tn := &api.Tenant{TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Tenant"}, Metadata: api.ObjectMeta{Name: t.name}}
		if _, err := e.admin[0].Create(setupCtx, tn); err != nil {
			return nil, fmt.Errorf("create tenant %s: %w", t.name, err)
		}
		tok := &api.Token{
			TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Token"},
			Spec:     api.TokenSpec{Role: api.RoleEdit, Tenant: t.name, Description: "paddock-bench"},
		}
		out, err := e.admin[0].Create(setupCtx, tok)
		if err != nil {
			return nil, fmt.Errorf("create edit token for tenant %s: %w", t.name, err)
		}
		ccfg := &client.Config{
			Server:               admin.Server,
			CertificateAuthority: admin.CertificateAuthority,
			Token:                out.(*api.Token).Status.Token,
			Tenant:               t.name,
			Role:                 string(api.RoleEdit),
		}
		if *t.dst, err = clients(ccfg, cfg.Conns); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// clients returns n clients for cfg, each with its own connection.
func clients(cfg *client.Config, n int) ([]*client.Client, error) {
	out := make([]*client.Client, n)
	for i := range out {
		c, err := client.New(cfg)
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

// close stops the API server and the raw member and waits for them.
func (e *env) close() error {
	var errs []error
	if e.stopServer != nil {
		e.stopServer()
		select {
		case err := <-e.serverDone:
			if err != nil && !errors.Is(err, context.Canceled) {
				errs = append(errs, fmt.Errorf("API server: %w", err))
			}
		case <-time.After(time.Minute):
			errs = append(errs, errors.New("API server: still running a minute after it was told to stop"))
		}
	}
	if e.raw != nil {
		if err := e.raw.Close(); err != nil {
			errs = append(errs, fmt.Errorf("raw etcd: %w", err))
		}
	}
	return errors.Join(errs...)
}

// objectShape makes the ConfigMaps the API workloads write and the values
// of the matching raw puts, all of the same stored size.
type objectShape struct {
	payload string
	value   []byte // the stored JSON of a typical object
}

// newObjectShape sizes a ConfigMap's payload so that its stored JSON
// (what the store puts into etcd: with uid, generation and creation
// time, without resourceVersion) is size bytes for a typical name.
func newObjectShape(size int) objectShape {
	sample := func(payload string) []byte {
		cm := &api.ConfigMap{
			TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "ConfigMap"},
			Metadata: api.ObjectMeta{
				Name: "r10-w10-1000", Tenant: benchTenant, UID: store.NewUID(), Generation: 1,
				CreationTimestamp: api.NewTime(time.Now()),
			},
			Data: map[string]string{"payload": payload},
		}
		b, _ := json.Marshal(cm)
		return b
	}
	base := len(sample(""))
	s := objectShape{payload: strings.Repeat("x", max(0, size-base))}
	s.value = sample(s.payload)
	return s
}

func (s objectShape) configMap(tenant, name string) *api.ConfigMap {
	return &api.ConfigMap{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "ConfigMap"},
		Metadata: api.ObjectMeta{Name: name, Tenant: tenant},
		Data:     map[string]string{"payload": s.payload},
	}
}

// rawKey is the etcd key the store gives a ConfigMap.
func rawKey(tenant, name string) string {
	return store.DefaultPrefix + configMapKind.Resource + "/" + tenant + "/" + name
}

// bench runs the phases.
type bench struct {
	cfg  Config
	env  *env
	res  *results
	runs atomic.Int64 // numbers runs, to keep object names unique
}

// workload is one measured thing at one concurrency.
type workload struct {
	ID      string // stable identifier, e.g. "api-create-admin"
	Label   string // what the table calls it
	Unit    string // what one operation is, e.g. "creates"
	Clients int
	// Floor names the workload this one is compared with ("" for none).
	Floor string
	op    func(run int) opFunc
	Runs  []runResult
}

// measure runs a group of workloads that belong together: each warms up,
// then every repetition runs each of them once, in order, so that a
// floor and what is compared with it run back to back.
func (b *bench) measure(ctx context.Context, group []*workload) error {
	if len(b.cfg.Workloads) > 0 {
		group = slices.DeleteFunc(group, func(w *workload) bool { return !slices.Contains(b.cfg.Workloads, w.ID) })
	}
	for _, w := range group {
		if b.cfg.Warmup > 0 {
			b.env.log.Info("warming up", "workload", w.ID, "clients", w.Clients, "for", b.cfg.Warmup)
			if _, err := runLoad(ctx, w.Clients, b.cfg.Warmup, b.cfg.MaxOps, w.op(int(b.runs.Add(1)))); err != nil {
				return fmt.Errorf("%s warm-up: %w", w.ID, err)
			}
		}
	}
	for rep := 1; rep <= b.cfg.Reps; rep++ {
		for _, w := range group {
			r, err := runLoad(ctx, w.Clients, b.cfg.Duration, b.cfg.MaxOps, w.op(int(b.runs.Add(1))))
			if err != nil {
				return fmt.Errorf("%s: %w", w.ID, err)
			}
			w.Runs = append(w.Runs, r)
			b.env.log.Info("measured", "workload", w.ID, "clients", w.Clients, "rep", rep,
				"perSecond", int(r.Rate()), "p50", r.Lat.P50, "p99", r.Lat.P99)
		}
	}
	b.res.workloads = append(b.res.workloads, group...)
	return nil
}

// rawPut returns a workload of raw etcd puts of value under key(run, w, seq).
func (b *bench) rawPut(id, label string, clients int, key func(run, w, seq int) string, value string) *workload {
	kv := b.env.rawKV
	return &workload{ID: id, Label: label, Unit: "puts", Clients: clients,
		op: func(run int) opFunc {
			return func(ctx context.Context, w, seq int) error {
				_, err := kv.Put(ctx, key(run, w, seq), value)
				return err
			}
		}}
}

func objectName(run, w, seq int) string {
	return "r" + strconv.Itoa(run) + "-w" + strconv.Itoa(w) + "-" + strconv.Itoa(seq)
}

func (b *bench) putSmall(ctx context.Context) error {
	value := strings.Repeat("v", 256)
	for _, c := range b.cfg.Clients {
		// Distinct 8-byte keys, as etcd's benchmark tool makes them
		// with --key-size=8 --sequential-keys.
		var n atomic.Uint32
		w := b.rawPut("raw-put-small", "raw etcd put, 8 B key / 256 B value", c,
			func(int, int, int) string { return fmt.Sprintf("%08x", n.Add(1)) }, value)
		if err := b.measure(ctx, []*workload{w}); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) create(ctx context.Context) error {
	shape := b.env.shape
	for _, c := range b.cfg.Clients {
		raw := b.rawPut("raw-put", fmt.Sprintf("raw etcd put, API key / %d B value", len(shape.value)), c,
			func(run, w, seq int) string { return rawKey(benchTenant, objectName(run, w, seq)) }, string(shape.value))
		group := []*workload{raw}
		for _, who := range []struct {
			id, label string
			cs        []*client.Client
		}{
			{"api-create-admin", "API create (cluster-admin)", b.env.admin},
			{"api-create-edit", "API create (tenant edit)", b.env.edit},
		} {
			cs := who.cs
			group = append(group, &workload{ID: who.id, Label: who.label, Unit: "creates", Clients: c, Floor: raw.ID,
				op: func(run int) opFunc {
					return func(ctx context.Context, w, seq int) error {
						_, err := cs[w%len(cs)].Create(ctx, shape.configMap(benchTenant, objectName(run, w, seq)))
						return err
					}
				}})
		}
		if err := b.measure(ctx, group); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) get(ctx context.Context) error {
	n := b.cfg.GetObjects
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("get-%06d", i)
	}
	// The objects to read, in both stores.
	b.env.log.Info("creating objects to read", "count", n)
	shape := b.env.shape
	var next atomic.Int64
	if _, err := runLoad(ctx, min(16, n), 10*time.Minute, n, func(ctx context.Context, w, seq int) error {
		i := int(next.Add(1) - 1)
		if _, err := b.env.rawKV.Put(ctx, rawKey(benchTenant, names[i]), string(shape.value)); err != nil {
			return err
		}
		_, err := b.env.admin[w%len(b.env.admin)].Create(ctx, shape.configMap(benchTenant, names[i]))
		return err
	}); err != nil {
		return err
	}
	pick := func(w, seq int) string { return names[(w*7919+seq*104729)%n] }
	for _, c := range b.cfg.Clients {
		kv := b.env.rawKV
		raw := &workload{ID: "raw-get", Label: "raw etcd get (linearizable)", Unit: "gets", Clients: c,
			op: func(int) opFunc {
				return func(ctx context.Context, w, seq int) error {
					resp, err := kv.Get(ctx, rawKey(benchTenant, pick(w, seq)))
					if err == nil && len(resp.Kvs) != 1 {
						err = errors.New("raw get found nothing")
					}
					return err
				}
			}}
		cs := b.env.edit
		apiGet := &workload{ID: "api-get-edit", Label: "API get (tenant edit)", Unit: "gets", Clients: c, Floor: raw.ID,
			op: func(int) opFunc {
				return func(ctx context.Context, w, seq int) error {
					_, err := cs[w%len(cs)].Get(ctx, configMapKind, benchTenant, pick(w, seq))
					return err
				}
			}}
		if err := b.measure(ctx, []*workload{raw, apiGet}); err != nil {
			return err
		}
	}
	return nil
}
