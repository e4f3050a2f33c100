package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
)

// Defaults of Config.
const (
	DefaultLeaseName              = "paddock-controllers"
	DefaultLeaseDuration          = 15 * time.Second
	DefaultRenewPeriod            = 5 * time.Second
	DefaultRenewDeadline          = 10 * time.Second
	DefaultRetryPeriod            = 2 * time.Second
	DefaultWorkers                = 4
	DefaultNodeMonitorGracePeriod = 40 * time.Second
	DefaultPodEvictionTimeout     = 5 * time.Minute
)

// Config configures Run. Zero durations take the defaults above.
type Config struct {
	// Client reaches the API server; it needs cluster-admin rights.
	Client *client.Client
	// Identity names this process in the lease (host name and pid, say);
	// it must differ between the processes that compete.
	Identity string
	Log      *slog.Logger

	// LeaseName is the Lease the controllers' leader holds.
	LeaseName string
	// LeaseDuration is how long a lease not seen renewed stays held.
	LeaseDuration time.Duration
	// RenewPeriod is how often the leader renews.
	RenewPeriod time.Duration
	// RenewDeadline is how long the leader goes on without a successful
	// renewal before it stops its controllers; less than LeaseDuration.
	RenewDeadline time.Duration
	// RetryPeriod is how often a candidate tries to take the lease.
	RetryPeriod time.Duration

	// Workers is the number of workers of each controller.
	Workers int
	// NodeMonitorGracePeriod is how long a node's lease may go without a
	// renewal before the node is marked Ready=Unknown.
	NodeMonitorGracePeriod time.Duration
	// PodEvictionTimeout is how long a node stays Unknown before its pods
	// are deleted.
	PodEvictionTimeout time.Duration

	// Scheduler configures the scheduling loop.
	Scheduler SchedulerConfig

	// Network is the cluster's network layout: nodes' pod CIDRs are
	// allocated from its cluster CIDR. Empty fields take the defaults
	// (api.NetworkConfig.WithDefaults).
	Network api.NetworkConfig

	// LeadingChanged, when set, is told when this process starts (true)
	// and stops (false) leading.
	LeadingChanged func(leading bool)
}

func (c *Config) withDefaults() (Config, error) {
	out := *c
	if out.Client == nil {
		return out, errors.New("controller: Config.Client is required")
	}
	if out.Identity == "" {
		return out, errors.New("controller: Config.Identity is required")
	}
	if out.Log == nil {
		out.Log = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if out.LeaseName == "" {
		out.LeaseName = DefaultLeaseName
	}
	def(&out.LeaseDuration, DefaultLeaseDuration)
	def(&out.RenewPeriod, DefaultRenewPeriod)
	def(&out.RenewDeadline, DefaultRenewDeadline)
	def(&out.RetryPeriod, DefaultRetryPeriod)
	def(&out.NodeMonitorGracePeriod, DefaultNodeMonitorGracePeriod)
	def(&out.PodEvictionTimeout, DefaultPodEvictionTimeout)
	if out.Workers <= 0 {
		out.Workers = DefaultWorkers
	}
	if out.LeaseDuration < time.Second {
		return out, fmt.Errorf("controller: LeaseDuration %s: want at least 1s (leases count whole seconds)", out.LeaseDuration)
	}
	if out.RenewDeadline >= out.LeaseDuration {
		return out, fmt.Errorf("controller: RenewDeadline %s must be shorter than LeaseDuration %s, or two leaders could act at once", out.RenewDeadline, out.LeaseDuration)
	}
	if _, err := out.Scheduler.withDefaults(); err != nil {
		return out, err
	}
	out.Network = out.Network.WithDefaults()
	if err := out.Network.Validate(); err != nil {
		return out, fmt.Errorf("controller: network: %w", err)
	}
	if out.RenewPeriod >= out.RenewDeadline {
		return out, fmt.Errorf("controller: RenewPeriod %s must be shorter than RenewDeadline %s", out.RenewPeriod, out.RenewDeadline)
	}
	return out, nil
}

// Run runs leader election and, while this process leads, every
// controller. It blocks until ctx ends and returns once everything it
// started has stopped.
func Run(ctx context.Context, cfg Config) error {
	c, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	e := &elector{
		c: c.Client, name: c.LeaseName, identity: c.Identity,
		duration: c.LeaseDuration, renewPeriod: c.RenewPeriod, deadline: c.RenewDeadline, retry: c.RetryPeriod,
		log: c.Log, now: time.Now,
	}
	e.run(ctx, func(ctx context.Context) {
		if c.LeadingChanged != nil {
			c.LeadingChanged(true)
			defer c.LeadingChanged(false)
		}
		runControllers(ctx, c)
	})
	return nil
}

// runControllers runs every controller over one set of informers until
// ctx ends.
func runControllers(ctx context.Context, c Config) {
	inf := NewInformers(c.Client, c.Log)
	sched, err := newSchedulingLoop(c.Client, inf, c.Scheduler, c.Log)
	if err != nil {
		c.Log.Error("scheduler not started", "error", err) // Config.withDefaults checked it
		return
	}
	ctrls := []interface{ Run(context.Context) }{
		newReplicaSetController(c.Client, inf, c.Workers, c.Log),
		newDeploymentController(c.Client, inf, c.Workers, c.Log),
		newGarbageCollector(c.Client, inf, c.Workers, c.Log),
		newNodeLifecycleController(c.Client, inf, c.NodeMonitorGracePeriod, c.PodEvictionTimeout, c.Log),
		newNodeIPAMController(c.Client, inf, c.Network, c.Log),
		newEndpointsController(c.Client, inf, c.Workers, c.Log),
		sched,
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	inf.Start(ctx, &wg)
	if err := inf.WaitSynced(ctx); err != nil {
		return
	}
	for _, ctl := range ctrls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctl.Run(ctx)
		}()
	}
	<-ctx.Done()
}

// The kinds the controllers work on.
var (
	podKind    = mustKind(&api.Pod{})
	rsKind     = mustKind(&api.ReplicaSet{})
	deployKind = mustKind(&api.Deployment{})
	nodeKind   = mustKind(&api.Node{})
	tenantKind = mustKind(&api.Tenant{})
	leaseKind  = mustKind(&api.Lease{})

	serviceKind   = mustKind(&api.Service{})
	endpointsKind = mustKind(&api.Endpoints{})
)

func mustKind(o api.Object) *api.Kind {
	k, ok := api.KindOf(o)
	if !ok {
		panic(fmt.Sprintf("controller: no kind for %T", o))
	}
	return k
}
