package svcbench

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/paddock-dev/paddock/bench/internal/machine"
	"github.com/paddock-dev/paddock/bench/internal/mdreport"
	"github.com/paddock-dev/paddock/bench/internal/stats"
)

// goalP99 is B6's goal for a change at 10,000 services.
const goalP99 = 100 * time.Millisecond

// results is the whole run.
type results struct {
	cfg               Config
	machine           machine.Info
	started, finished time.Time
	nftVersion        string
	sizes             []*sizeResult
}

func summarize(d []time.Duration) stats.Latencies { return stats.Summarize(slices.Clone(d)) }

func ratio(a, b time.Duration) string { return mdreport.Ratio(float64(a), float64(b)) }

func p50p99(l stats.Latencies) string { return mdreport.Ms(l.P50) + " / " + mdreport.Ms(l.P99) }

// markdown returns the run's report.
func (res *results) markdown() string {
	var b strings.Builder
	cfg, m := res.cfg, res.machine
	sizes := make([]string, len(res.sizes))
	for i, s := range res.sizes {
		sizes[i] = mdreport.Count(float64(s.services))
	}
	mdreport.Heading(&b, fmt.Sprintf("B6: service programming latency (nftables service proxy, %s services × %d endpoints)", strings.Join(sizes, " and "), cfg.Endpoints), "bench/svcbench", res.started, res.finished, cfg.Command)
	fmt.Fprintf(&b, "A change points one service (in the middle of the table) from %d endpoints whose port refuses connections "+
		"to %d other endpoints that listen; it runs from the call that makes it until the first TCP connection to the service's "+
		"cluster IP that succeeds, from a client network namespace probing in a tight loop. The floor is the same probe after "+
		"a bare netlink insert of one DNAT rule into a table of its own in the same namespace (no proxy logic). %d changes and "+
		"%d floor inserts per size. Goal: p99 ≤ %s ms at 10,000 services.\n\n",
		cfg.Endpoints, cfg.Endpoints, cfg.Changes, cfg.Changes, mdreport.Ms(goalP99))

	t := mdreport.NewTable("Services", "Path", "change → first connect p50 / p99 (ms)", "Floor p50 / p99 (ms)", "Ratio at p50 / p99", "Goal p99 ≤ 100 ms")
	for _, s := range res.sizes {
		fl := summarize(s.floor)
		rows := []struct {
			path string
			d    []time.Duration
		}{{"Proxy.Update", s.changes}}
		if len(s.apiChanges) > 0 {
			rows = append(rows, struct {
				path string
				d    []time.Duration
			}{"API server → informers → Proxy", s.apiChanges})
		}
		for _, r := range rows {
			l := summarize(r.d)
			goal := "met"
			if l.P99 > goalP99 {
				goal = "missed"
			}
			t.Row(mdreport.Count(float64(s.services)), r.path, p50p99(l), p50p99(fl), ratio(l.P50, fl.P50)+" / "+ratio(l.P99, fl.P99), goal)
		}
	}
	b.WriteString(t.String())

	b.WriteString("\nFirst packet: a connection to the last-defined service's cluster IP, from connect to established, against the same connection straight to one of its endpoints (no NAT):\n\n")
	f := mdreport.NewTable("Services", "via the cluster IP p50 / p99 (ms)", "straight to the endpoint p50 / p99 (ms)", "Ratio at p50")
	for _, s := range res.sizes {
		fp, d := summarize(s.firstPacket), summarize(s.direct)
		f.Row(mdreport.Count(float64(s.services)), p50p99(fp), p50p99(d), ratio(fp.P50, d.P50))
	}
	b.WriteString(f.String())
	if len(res.sizes) >= 2 {
		first, last := res.sizes[0], res.sizes[len(res.sizes)-1]
		a, z := summarize(first.firstPacket).P50, summarize(last.firstPacket).P50
		da, dz := summarize(first.direct).P50, summarize(last.direct).P50
		fmt.Fprintf(&b, "\nFirst-packet p50 from %s to %s services: %s (goal: at most 5%% growth); the direct connections, "+
			"made in turn with them, moved %s meanwhile.\n",
			mdreport.Count(float64(first.services)), mdreport.Count(float64(last.services)), growth(a, z), growth(da, dz))
	}

	b.WriteString("\nWhere a change spends its time, and the ramps:\n\n")
	w := mdreport.NewTable("Services", "Proxy.Update call (the netlink transaction) p50 / p99 (ms)", "Ramp by Sync (s)", "API phase: Run start → all services programmed (s)")
	for _, s := range res.sizes {
		api := "not run"
		if s.apiRamp > 0 {
			api = fmt.Sprintf("%.1f", s.apiRamp.Seconds())
		}
		w.Row(mdreport.Count(float64(s.services)), p50p99(summarize(s.applied)), fmt.Sprintf("%.1f", s.ramp.Seconds()), api)
	}
	b.WriteString(w.String())

	b.WriteString("\n### Raw samples\n\n")
	r := mdreport.NewTable("Services", "Workload", "Samples", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms")
	for _, s := range res.sizes {
		for _, wl := range []struct {
			label string
			d     []time.Duration
		}{
			{"change → first connect, Proxy.Update", s.changes},
			{"change → first connect, through the API", s.apiChanges},
			{"floor: one-rule DNAT insert → first connect", s.floor},
			{"first packet via the cluster IP", s.firstPacket},
			{"first packet straight to the endpoint", s.direct},
		} {
			if len(wl.d) == 0 {
				continue
			}
			l := summarize(wl.d)
			r.Row(mdreport.Count(float64(s.services)), wl.label, strconv.Itoa(l.N), mdreport.Ms(l.P50), mdreport.Ms(l.P90),
				mdreport.Ms(l.P99), mdreport.Ms(l.Max), mdreport.Ms(l.Mean))
		}
	}
	b.WriteString(r.String())

	b.WriteString("\n### How it was measured\n\n")
	b.WriteString("* Everything runs in network namespaces the bench makes (core/proxy/proxytest): a node namespace that the proxy " +
		"programs (core/proxy, table `ip " + table + "`, through github.com/google/nftables " + res.nftVersion + " over netlink), a client " +
		"namespace routed through it, and one pod namespace with 20 extra addresses that listens on port 8080 on all of them; " +
		"port 8081 is closed, so that a connection DNATed there is refused at once (a TCP reset).\n")
	fmt.Fprintf(&b, "* The ramp: Proxy.Sync with every service (one TCP port, cluster IP from 10.96.0.1 on) and its %d endpoints, in "+
		"transactions of many services each; the endpoints of every service but the last-defined are addresses never dialled.\n", cfg.Endpoints)
	b.WriteString("* A change: the measured service is first pointed (untimed) at endpoints on the closed port, and the prober waits " +
		"until a connection is refused; then the timed change points it at other addresses on the open port, and the prober " +
		"connects in a tight loop (each attempt a new connection, refused until the rule is in) until one succeeds. Proxy.Update " +
		"returns once the kernel has taken its one transaction; the window ends at the successful connect's return.\n")
	if cfg.API {
		fmt.Fprintf(&b, "* Through the API: the services and endpoints are created (%d at a time) in a control plane started in the "+
			"process as `paddock server` starts it (internal/testcluster: embedded etcd, TLS, authn, authz, admission; controllers off, "+
			"so no endpoints controller rewrites the bench's endpoints), and the proxy runs Proxy.Run with a cluster-admin client: "+
			"informers on Services and Endpoints of all tenants, a first Sync, then each change as it comes. A change is the "+
			"update of the Endpoints object (compare-and-swap, over HTTPS on loopback); the window runs from the update call to the "+
			"first successful connect.\n", creators)
	}
	b.WriteString("* The floor: a table `ip " + floorTable + "` with one nat prerouting chain in the same node namespace; an insert " +
		"is one netlink batch with one rule (`ip daddr 10.97.0.1 tcp dport 80 dnat to` an endpoint); it is removed, untimed, " +
		"before the next. The pod owns 10.97.0.1 with port 80 closed, so that connections are refused until the rule is in.\n")
	b.WriteString("* The first packets: sequential connections from the client namespace, to the cluster IP and straight to the " +
		"endpoint in turn, each timed from the connect call to its return (SYN, SYN-ACK; for the cluster IP through the node's nat " +
		"hooks and the proxy's maps), then closed.\n")
	b.WriteString("* Why a change costs more in a larger table: on every transaction that adds a rule holding a jump, a map lookup, " +
		"a NAT or a reject, the kernel re-validates every chain that the table's base chains reach (here twice: from prerouting " +
		"and from output), so the Proxy.Update call grows with the number of service ports, while the floor's one-rule table stays " +
		"small. This is why the proxy keeps one chain per service port with the endpoints as map data: a chain per endpoint " +
		"(kube-proxy's nftables layout) made each change about eight times as slow at 10,000 services × 10 endpoints when tried on " +
		"this machine.\n")
	b.WriteString("* The bench holds the machine-wide test lock (internal/testlock) for the whole run.\n")

	b.WriteString("\n### Machine\n\n")
	fmt.Fprintf(&b, "* CPUs: %d (`nproc`; affinity %s), %s; memory %s\n", m.NProc, m.Affinity, m.CPUModel, m.MemTotal)
	fmt.Fprintf(&b, "* Kernel: %s; cgroup v2 the only hierarchy: %s\n", m.Kernel, m.Cgroup)
	fmt.Fprintf(&b, "* Bench process GOMAXPROCS %d; %s; source %s\n", m.GOMAXPROCS, m.GoVersion, m.Source)
	fmt.Fprintf(&b, "* Load average (1/5/15 min) before: %s; after: %s (the machine is shared: other builds may have run meanwhile)\n",
		m.LoadBefore, m.LoadAfter)
	return b.String()
}

// growth says how much z is above a, in percent.
func growth(a, z time.Duration) string {
	if a <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%+.1f%%", (float64(z)/float64(a)-1)*100)
}
