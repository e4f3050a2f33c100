package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/core/agent/streams"
	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/core/workqueue"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// Agent is a running node agent.
type Agent struct {
	cfg Config
	c   *client.Client
	log *slog.Logger
	ctx context.Context // Run's; probes and waiters end with it
	wg  *sync.WaitGroup // Run's; it waits for the goroutines it added

	rt      *runtimes
	net     *network // nil without a network plugin
	pods    *client.Informer
	classes *client.Informer
	queue   *workqueue.Queue
	events  *recorder

	endpoint api.NodeDaemonEndpoint // the stream server's, published in the node status

	mu      sync.Mutex
	state   map[string]*podState // by pod key
	waiters map[string]bool      // container ids with a WaitContainer
	nodeIP  string

	ready chan struct{}
}

// New checks cfg and returns an agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	if cfg.Client == nil {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "client", "a client of the API server is required")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	log := cfg.Log.With("node", cfg.NodeName)
	return &Agent{
		cfg:     cfg,
		c:       cfg.Client,
		log:     log,
		queue:   workqueue.New(cfg.RestartBackoff.Initial, cfg.RestartBackoff.Max),
		state:   map[string]*podState{},
		waiters: map[string]bool{},
		ready:   make(chan struct{}),
	}, nil
}

// Ready is closed once the agent has registered its node and started
// syncing pods.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Run runs the agent until ctx ends. On return the plugins are left
// running (their containers too) for the next agent to reattach to.
func (a *Agent) Run(ctx context.Context) error {
	for _, d := range []string{a.cfg.DataDir, filepath.Join(a.cfg.DataDir, "sandboxes"), filepath.Join(a.cfg.DataDir, "netns"), filepath.Join(a.cfg.DataDir, "import")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
	}
	a.nodeIP = a.cfg.NodeIP
	if a.nodeIP == "" {
		a.nodeIP = defaultNodeIP()
	}
	if err := a.launchRuntimes(ctx); err != nil {
		return err
	}
	defer a.rt.host.Close()
	if err := a.launchNetwork(ctx); err != nil {
		return err
	}
	if err := a.importArchives(ctx); err != nil {
		return err
	}
	a.recoverSandboxes(ctx, "")
	a.events = newRecorder(a.c, a.cfg.NodeName, a.log)

	// On return: stop everything (cancel, queue), then wait for it.
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer a.queue.ShutDown()
	a.ctx, a.wg = ctx, &wg

	rcKind, _ := api.KindFor("runtimeclasses")
	a.classes = client.NewInformer(a.c, rcKind, "", client.ListOptions{}, a.log)
	a.classes.AddHandler(client.Handler{
		OnAdd:    func(api.Object) { a.nodeChanged() },
		OnUpdate: func(_, _ api.Object) { a.nodeChanged() },
		OnDelete: func(api.Object) { a.nodeChanged() },
	})
	podKind, _ := api.KindFor("pods")
	a.pods = client.NewInformer(a.c, podKind, "", client.ListOptions{FieldSelector: "spec.nodeName=" + a.cfg.NodeName}, a.log)
	a.pods.AddHandler(client.Handler{
		OnAdd:    func(o api.Object) { a.queue.Add(client.Key(o)) },
		OnUpdate: func(_, o api.Object) { a.queue.Add(client.Key(o)) },
		OnDelete: func(o api.Object) { a.queue.Add(client.Key(o)) },
	})
	for _, inf := range []*client.Informer{a.classes, a.pods} {
		wg.Add(1)
		go func() { defer wg.Done(); inf.Run(ctx) }()
	}
	for _, inf := range []*client.Informer{a.classes, a.pods} {
		if err := inf.WaitSynced(ctx); err != nil {
			return err
		}
	}
	if err := a.startNetwork(ctx, &wg); err != nil {
		return err
	}
	if err := a.startStreams(ctx, &wg); err != nil {
		return err
	}
	if err := a.registerNode(ctx); err != nil {
		return err
	}
	wg.Add(1)
	go func() { defer wg.Done(); a.heartbeat(ctx) }()

	// Pods the runtimes have that the API no longer binds here are synced
	// too: that removes them.
	a.resyncAll()
	for range a.cfg.Workers {
		wg.Add(1)
		go func() { defer wg.Done(); a.worker(ctx) }()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(a.cfg.ResyncInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				a.resyncAll()
			}
		}
	}()
	close(a.ready)
	a.log.Info("node agent running", "runtimes", a.rt.names(), "data-dir", a.cfg.DataDir)
	<-ctx.Done()
	return nil
}

// startStreams runs the stream server the API server proxies logs and
// exec to.
func (a *Agent) startStreams(ctx context.Context, wg *sync.WaitGroup) error {
	srv, err := streams.New(streams.Config{DataDir: filepath.Join(a.cfg.DataDir, "streams"), ClientCA: a.cfg.ClientCA, Resolver: a, Log: a.log.With("component", "streams")})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", a.cfg.StreamsListen)
	if err != nil {
		return fmt.Errorf("stream server: listen on %s: %w", a.cfg.StreamsListen, err)
	}
	a.endpoint = srv.Endpoint(ln)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Run(ctx, ln); err != nil && ctx.Err() == nil {
			a.log.Error("stream server", "error", err)
		}
	}()
	return nil
}

// resyncAll queues every pod the API binds here and every pod a runtime
// has a sandbox of.
func (a *Agent) resyncAll() {
	if a.pods != nil {
		for _, o := range a.pods.List() {
			a.queue.Add(client.Key(o))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a.rt.each(func(_ string, c *runtimev1.Client) error {
		resp, err := c.ListSandboxes(ctx, &runtimev1.ListSandboxesRequest{Labels: map[string]string{labelManaged: "true"}})
		if err != nil {
			return err
		}
		for _, sb := range resp.Sandboxes {
			if cfg := sb.GetConfig(); cfg != nil {
				a.queue.Add(cfg.Tenant + "/" + cfg.Name)
			}
		}
		return nil
	})
}

// worker syncs queued pods until the queue shuts down.
func (a *Agent) worker(ctx context.Context) {
	for {
		key, ok := a.queue.Get()
		if !ok {
			return
		}
		retry, err := a.syncPod(ctx, key)
		switch {
		case err != nil && ctx.Err() == nil:
			d := a.queue.Retry(key)
			a.log.Warn("pod sync failed; retrying", "pod", key, "error", err, "in", d)
		case err == nil:
			a.queue.Forget(key)
			if retry > 0 {
				a.queue.AddAfter(key, retry)
			}
		}
		a.queue.Done(key)
	}
}

// podState is what the agent keeps in memory about a pod.
type podState struct {
	uid       string
	startTime *api.Time
	// waiting is why each container is not running, when the agent knows
	// better than the runtime (image pulls, back-off, config errors).
	waiting map[string]*api.ContainerStateWaiting
	// podWaiting is why no container can start (no sandbox, no runtime).
	podWaiting *api.ContainerStateWaiting
	// sandboxID and podIP: the pod's current sandbox and the IP its
	// network namespace was given ("" without a network plugin).
	sandboxID, podIP string
	// pullFailures counts failed pulls per container, for back-off, and
	// lastPullFailure says when the last one was.
	pullFailures    map[string]int
	lastPullFailure map[string]time.Time
	// probes by container id.
	probes map[string]*prober
	// lastTerminated is how each container last ended in a sandbox that
	// died and is gone (its lastState while the runtime has only one
	// instance of it in the new sandbox).
	lastTerminated map[string]*api.ContainerStateTerminated
}

// stateOf returns the pod's in-memory state, made fresh for a new uid.
func (a *Agent) stateOf(key, uid string) *podState {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.state[key]
	if st == nil || st.uid != uid {
		if st != nil {
			st.stopProbes()
		}
		st = &podState{
			uid:             uid,
			waiting:         map[string]*api.ContainerStateWaiting{},
			pullFailures:    map[string]int{},
			lastPullFailure: map[string]time.Time{},
			probes:          map[string]*prober{},
			lastTerminated:  map[string]*api.ContainerStateTerminated{},
		}
		a.state[key] = st
	}
	return st
}

// forget drops a pod's in-memory state.
func (a *Agent) forget(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if st := a.state[key]; st != nil {
		st.stopProbes()
		delete(a.state, key)
	}
}

// watchExit queues key when the container exits (one waiter per
// container).
func (a *Agent) watchExit(ctx context.Context, c *runtimev1.Client, key, id string) {
	a.mu.Lock()
	if a.waiters[id] {
		a.mu.Unlock()
		return
	}
	a.waiters[id] = true
	a.mu.Unlock()
	go func() {
		defer func() {
			a.mu.Lock()
			delete(a.waiters, id)
			a.mu.Unlock()
		}()
		_, err := c.WaitContainer(ctx, &runtimev1.WaitContainerRequest{Id: id})
		if ctx.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			a.log.Debug("wait container", "container", id, "error", err)
		}
		a.queue.Add(key)
	}()
}
