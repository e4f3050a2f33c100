package agent

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"reflect"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"golang.org/x/sys/unix"
)

var (
	nodeKind, _  = api.KindFor("nodes")
	leaseKind, _ = api.KindFor("leases")
)

// nodeStatus is the Node status this agent reports now.
func (a *Agent) nodeStatus() api.NodeStatus {
	capacity := api.ResourceList{
		api.ResourceCPU:    api.NewQuantity(int64(goruntime.NumCPU())),
		api.ResourceMemory: api.NewQuantity(memTotal()),
		api.ResourcePods:   api.NewQuantity(a.cfg.MaxPods),
	}
	alloc := api.ResourceList{}
	for name, q := range capacity {
		if r, ok := a.cfg.Reserved[name]; ok {
			q = q.Sub(r)
			if q.MilliValue() < 0 {
				q = api.NewQuantity(0)
			}
		}
		alloc[name] = q
	}
	var uts unix.Utsname
	unix.Uname(&uts)
	hostname, _ := os.Hostname()
	ready := api.Condition{Type: "Ready", Status: "True", Reason: "AgentReady", Message: "the node agent is running and its runtime plugins answer"}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.rt.each(func(_ string, c *runtimev1.Client) error {
		_, err := c.Info(ctx, &runtimev1.InfoRequest{})
		return err
	}); err != nil {
		ready.Status, ready.Reason, ready.Message = "False", "RuntimeUnavailable", err.Error()
	}
	conditions := []api.Condition{ready}
	if a.net != nil {
		conditions = append(conditions, a.networkCondition(ctx))
	}
	return api.NodeStatus{
		Capacity:    capacity,
		Allocatable: alloc,
		Conditions:  conditions,
		Addresses:   []api.NodeAddress{{Type: "InternalIP", Address: a.nodeIP}, {Type: "Hostname", Address: hostname}},
		NodeInfo: api.NodeSystemInfo{
			AgentVersion:    a.cfg.Version,
			KernelVersion:   unix.ByteSliceToString(uts.Release[:]),
			OperatingSystem: goruntime.GOOS,
			Architecture:    goruntime.GOARCH,
		},
		RuntimeClasses: a.offeredClasses(),
		DaemonEndpoint: a.endpoint,
	}
}

// registerNode creates the agent's Node, or takes over an existing one
// (keeping its spec: taints and unschedulable are the operators').
func (a *Agent) registerNode(ctx context.Context) error {
	status := a.nodeStatus()
	stampHeartbeat(&status)
	n := &api.Node{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Node"},
		Metadata: api.ObjectMeta{Name: a.cfg.NodeName, Labels: a.nodeLabels()},
		Status:   status,
	}
	_, err := a.c.Create(ctx, n)
	if errdefs.IsAlreadyExists(err) {
		err = a.updateNode(ctx, true)
	}
	if err != nil {
		return fmt.Errorf("register node %s: %w", a.cfg.NodeName, err)
	}
	a.log.Info("node registered", "ip", a.nodeIP, "runtime-classes", status.RuntimeClasses)
	return a.renewLease(ctx)
}

func (a *Agent) nodeLabels() map[string]string {
	l := map[string]string{"paddock.dev/hostname": a.cfg.NodeName, "paddock.dev/os": goruntime.GOOS, "paddock.dev/arch": goruntime.GOARCH}
	for k, v := range a.cfg.Labels {
		l[k] = v
	}
	return l
}

// updateNode writes the node's status (and, at registration, its labels)
// with compare-and-swap, retrying conflicts.
func (a *Agent) updateNode(ctx context.Context, labels bool) error {
	for attempt := 0; ; attempt++ {
		o, err := a.c.Get(ctx, nodeKind, "", a.cfg.NodeName)
		if err != nil {
			return err
		}
		n := o.(*api.Node)
		if labels {
			want := a.nodeLabels()
			if !reflect.DeepEqual(n.Metadata.Labels, want) {
				if n.Metadata.Labels == nil {
					n.Metadata.Labels = map[string]string{}
				}
				for k, v := range want {
					n.Metadata.Labels[k] = v
				}
				if o, err = a.c.Update(ctx, n); err != nil {
					if errdefs.IsConflict(err) && attempt < 5 {
						continue
					}
					return err
				}
				n = o.(*api.Node)
			}
		}
		n.Status = a.nodeStatus()
		stampHeartbeat(&n.Status)
		_, err = a.c.UpdateStatus(ctx, n)
		if errdefs.IsConflict(err) && attempt < 5 {
			continue
		}
		return err
	}
}

func stampHeartbeat(s *api.NodeStatus) {
	now := api.NewTime(time.Now())
	for i := range s.Conditions {
		s.Conditions[i].LastHeartbeatTime = now
	}
}

// nodeChanged writes the node's status soon (the runtime classes it
// offers changed).
func (a *Agent) nodeChanged() {
	select {
	case <-a.ready:
	default:
		return // registration writes it
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := a.updateNode(ctx, false); err != nil {
			a.log.Warn("update node status", "error", err)
		}
	}()
}

// heartbeat renews the node's lease and rewrites its status now and then.
func (a *Agent) heartbeat(ctx context.Context) {
	lease := time.NewTicker(a.cfg.HeartbeatInterval)
	defer lease.Stop()
	status := time.NewTicker(a.cfg.StatusInterval)
	defer status.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-lease.C:
			if err := a.renewLease(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("renew node lease", "error", err)
			}
		case <-status.C:
			if err := a.updateNode(ctx, false); err != nil && ctx.Err() == nil {
				a.log.Warn("update node status", "error", err)
			}
		}
	}
}

// renewLease creates or renews the node's lease.
func (a *Agent) renewLease(ctx context.Context) error {
	name := api.NodeLeaseName(a.cfg.NodeName)
	now := api.NewTime(time.Now())
	for attempt := 0; ; attempt++ {
		o, err := a.c.Get(ctx, leaseKind, "", name)
		if errdefs.IsNotFound(err) {
			l := &api.Lease{
				TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Lease"},
				Metadata: api.ObjectMeta{Name: name},
				Spec:     api.LeaseSpec{HolderIdentity: a.cfg.NodeName, LeaseDurationSeconds: int32(a.cfg.LeaseDuration / time.Second), AcquireTime: now, RenewTime: now},
			}
			_, err = a.c.Create(ctx, l)
			if errdefs.IsAlreadyExists(err) && attempt < 5 {
				continue
			}
			return err
		}
		if err != nil {
			return err
		}
		l := o.(*api.Lease)
		l.Spec.HolderIdentity, l.Spec.RenewTime = a.cfg.NodeName, now
		l.Spec.LeaseDurationSeconds = int32(a.cfg.LeaseDuration / time.Second)
		_, err = a.c.Update(ctx, l)
		if errdefs.IsConflict(err) && attempt < 5 {
			continue
		}
		return err
	}
}

// memTotal is the machine's memory in bytes (0 if unknown).
func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}

// defaultNodeIP is the first global unicast IPv4 address of the machine,
// or loopback.
func defaultNodeIP() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && ipn.IP.IsGlobalUnicast() {
				return ipn.IP.String()
			}
		}
	}
	return "127.0.0.1"
}
