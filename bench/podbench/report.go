package podbench

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/paddock-dev/paddock/bench/internal/mdreport"
	"github.com/paddock-dev/paddock/bench/internal/stats"
)

// latencies summarises one duration of each start.
func (p *podPhase) latencies(of func(podStart) time.Duration) stats.Latencies {
	d := make([]time.Duration, len(p.Starts))
	for i, s := range p.Starts {
		d[i] = of(s)
	}
	return stats.Summarize(d)
}

func (p *podPhase) running() stats.Latencies {
	return p.latencies(func(s podStart) time.Duration { return s.Running })
}

// rate is n starts per second over elapsed.
func rate(n int, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	return float64(n) / elapsed.Seconds()
}

func sum(d []time.Duration) time.Duration {
	var t time.Duration
	for _, v := range d {
		t += v
	}
	return t
}

func p50p99(l stats.Latencies) string { return mdreport.Ms(l.P50) + " / " + mdreport.Ms(l.P99) }

// markdown returns the run's report.
func (res *results) markdown() string {
	var b strings.Builder
	cfg, m := res.cfg, res.machine
	mdreport.Heading(&b, "PODSTART: end-to-end pod start on the real runc runtime", "bench/podbench", res.started, res.finished, cfg.Command)
	fmt.Fprintf(&b, "A pod start runs from the return of the API call that creates the pod (`sleep 3600` in %s, no node named: "+
		"the scheduler binds it) until the event of one watch on the tenant's pods that shows it Running with its container "+
		"running. In between: the scheduler loop's binding, the node agent's sandbox (network namespace included) and "+
		"container start through the runc plugin (`%s` %s), its status write and the watch's delivery, on a one-node cluster "+
		"in this process. The floor is bare `runc run` of the plugin's own bundle of the image (bench/runtimebench's), in the "+
		"same run. %d sequential starts of each, in turn, after %d unmeasured ones; then %d starts at concurrency %d, floor first.\n\n",
		cfg.Image, res.plugin.Name, res.plugin.Version, cfg.Pods, cfg.Warmup, cfg.Pods, cfg.Concurrency)

	sp, cp := res.seqPods.running(), res.conPods.running()
	sf, cf := stats.Summarize(slices.Clone(res.seqFloor)), stats.Summarize(slices.Clone(res.conFloor))
	podRate, floorRate := res.conPods.Rate(), rate(len(res.conFloor), res.conFloorElapsed)
	t := mdreport.NewTable("Metric", "Pods", strings.Replace(res.floorLabel, "floor:", "Floor:", 1), "Ratio")
	t.Row("create → Running seen, sequential, p50 (ms)", mdreport.Ms(sp.P50), mdreport.Ms(sf.P50), mdreport.Ratio(float64(sp.P50), float64(sf.P50)))
	t.Row("create → Running seen, sequential, p99 (ms)", mdreport.Ms(sp.P99), mdreport.Ms(sf.P99), mdreport.Ratio(float64(sp.P99), float64(sf.P99)))
	t.Row(fmt.Sprintf("starts/s at concurrency %d (%d starts)", cfg.Concurrency, cfg.Pods),
		fmt.Sprintf("%.1f", podRate), fmt.Sprintf("%.1f", floorRate), mdreport.Ratio(podRate, floorRate))
	t.Row(fmt.Sprintf("create → Running seen at concurrency %d, p50 / p99 (ms)", cfg.Concurrency),
		p50p99(cp), p50p99(cf), mdreport.Ratio(float64(cp.P50), float64(cf.P50))+" at p50")
	b.WriteString(t.String())

	b.WriteString("\nWhere a pod start spends its time, by the arrival of the watch's events (the Create call itself is outside the timed window):\n\n")
	s := mdreport.NewTable("Step", "Sequential p50 / p99 ms", fmt.Sprintf("Concurrency %d p50 / p99 ms", cfg.Concurrency))
	for _, row := range []struct {
		label string
		of    func(podStart) time.Duration
	}{
		{"the Create call's round trip (authn, admission, the etcd write)", func(s podStart) time.Duration { return s.Create }},
		{"Create returned → bound seen (the scheduler loop's informer, placement and binding; the watch's delivery)", func(s podStart) time.Duration { return s.Bound }},
		{"bound seen → Running seen (the agent's informer, network namespace, sandbox, container create and start through the plugin, status write; the watch's delivery)", func(s podStart) time.Duration { return s.Running - s.Bound }},
		{"the whole start: Create returned → Running seen", func(s podStart) time.Duration { return s.Running }},
	} {
		s.Row(row.label, p50p99(res.seqPods.latencies(row.of)), p50p99(res.conPods.latencies(row.of)))
	}
	b.WriteString(s.String())

	b.WriteString("\n### Raw samples\n\n")
	d := mdreport.NewTable("Workload", "Concurrency", "Starts", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms", "Starts/s")
	type workload struct {
		label string
		c     int
		lat   []time.Duration
		rate  float64
	}
	podLat := func(p *podPhase) []time.Duration {
		out := make([]time.Duration, len(p.Starts))
		for i, s := range p.Starts {
			out[i] = s.Running
		}
		return out
	}
	all := []workload{
		{"pods: create → Running seen", 1, podLat(res.seqPods), res.seqPods.Rate()},
		{res.floorLabel, 1, res.seqFloor, rate(len(res.seqFloor), sum(res.seqFloor))},
		{"pods: create → Running seen", cfg.Concurrency, podLat(res.conPods), podRate},
		{res.floorLabel, cfg.Concurrency, res.conFloor, floorRate},
	}
	for _, w := range all {
		l := stats.Summarize(slices.Clone(w.lat))
		d.Row(w.label, strconv.Itoa(w.c), strconv.Itoa(l.N), mdreport.Ms(l.P50), mdreport.Ms(l.P90), mdreport.Ms(l.P99),
			mdreport.Ms(l.Max), mdreport.Ms(l.Mean), fmt.Sprintf("%.1f", w.rate))
	}
	b.WriteString(d.String())
	b.WriteString("\nEvery start's latency in ms, in the order the starts began:\n\n")
	for _, w := range all {
		vals := make([]string, len(w.lat))
		for i, v := range w.lat {
			vals[i] = mdreport.Ms(v)
		}
		fmt.Fprintf(&b, "* %s, concurrency %d: %s\n", w.label, w.c, strings.Join(vals, " "))
	}

	b.WriteString("\n### How it was measured\n\n")
	b.WriteString("* The cluster runs in the bench's process as `paddock server` and `paddock agent` run: core/server with embedded etcd, " +
		"TLS, token authn, authz, admission, the audit log on disk and the leader-elected controllers (the scheduler loop among them), " +
		"all with their defaults; one node agent (core/agent, its defaults but loopback addresses) with a node credential minted through " +
		"the admin client, running the runc plugin binary, which imports the image archive from the agent's import directory at start. " +
		"The pods are created by a cluster admin over HTTPS on loopback.\n")
	b.WriteString("* One watch on the tenant's pods, on a connection of its own, is opened before the first start from the resourceVersion of " +
		"a list; its reader takes the time of each event as it decodes it. A start's window opens when the Create call returns and closes " +
		"at the first event showing the pod Running with its container running; \"bound\" is the first event showing spec.nodeName set.\n")
	fmt.Fprintf(&b, "* Sequential: a pod start and a floor start take turns (which goes first alternates); each pod is deleted with grace "+
		"period 0 once it ran and the next start waits, untimed, until the agent has removed its sandbox (its record under the agent's "+
		"sandboxes/ directory is gone); each floor container is killed and deleted. Concurrent: %d workers each create the next pod as "+
		"soon as their last one is seen running, until %d have run; starts/s is that count over the time from the first Create call to "+
		"the last Running event. The floor's concurrent phase is bench/runtimebench's, from the fork of the first `runc run` to the last "+
		"process running. The containers stay until their phase is over.\n", cfg.Concurrency, cfg.Pods)
	b.WriteString("* The floor (bench/runtimebench, as in B3): `runc run` in the foreground of the runtime plugin's own OCI spec and root filesystem " +
		"of a container created, never started, in a sandbox of a second instance of the plugin, with the container's command writing a " +
		"marker to a FIFO the bench reads; a start runs from the fork of runc to that read. It does without everything a pod start adds: " +
		"the API, etcd, the scheduler, the agent, a network namespace and sandbox of its own, the root filesystem's overlay mount, the shim " +
		"and the gRPC round trips.\n")
	b.WriteString("* The bench holds the machine-wide test lock (internal/testlock) for the whole run, so that no test's containers run meanwhile.\n")

	b.WriteString("\n### Machine\n\n")
	fmt.Fprintf(&b, "* CPUs: %d (`nproc`; affinity %s), %s; memory %s\n", m.NProc, m.Affinity, m.CPUModel, m.MemTotal)
	fmt.Fprintf(&b, "* Kernel: %s; cgroup v2 the only hierarchy: %s\n", m.Kernel, m.Cgroup)
	fmt.Fprintf(&b, "* %s; plugin `%s` %s (API %s)\n", res.runcVersion, res.plugin.Name, res.plugin.Version, strings.Join(res.plugin.APIVersions, ", "))
	fmt.Fprintf(&b, "* Bench process (control plane, agent and bench) GOMAXPROCS %d; %s; source %s\n", m.GOMAXPROCS, m.GoVersion, m.Source)
	fmt.Fprintf(&b, "* Load average (1/5/15 min) before: %s; after: %s (the machine is shared: other builds may have run meanwhile)\n",
		m.LoadBefore, m.LoadAfter)
	return b.String()
}
