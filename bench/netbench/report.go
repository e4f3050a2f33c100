package netbench

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/paddock-dev/paddock/bench/internal/machine"
	"github.com/paddock-dev/paddock/bench/internal/mdreport"
	"github.com/paddock-dev/paddock/bench/internal/stats"
	"github.com/paddock-dev/paddock/plugins/pluginhost"
)

// goalAddedRR is B6's goal for the round-trip latency a hop adds.
const goalAddedRR = 10 * time.Microsecond

// Indexes of the two paths in the results.
const (
	bridgePath = 0
	floorPath  = 1
)

// results is the whole run.
type results struct {
	cfg               Config
	machine           machine.Info
	started, finished time.Time
	plugin            pluginhost.Info
	mtu               int
	bridge, floor     pair
	streams           []*streamResult
	// rr are the timed round trips of every repetition, per path.
	rr [2][]time.Duration
}

// streamResult is one throughput workload: Gbit/s per repetition, per
// path.
type streamResult struct {
	streams int
	gbps    [2][]float64
}

// publish prints the report to cfg.Out and writes it into cfg.Write.
func (res *results) publish() error {
	if err := mdreport.Publish(res.cfg.Out, res.cfg.Write, SectionName, res.markdown()); err != nil {
		return fmt.Errorf("netbench: %w", err)
	}
	return nil
}

func gbit(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

// us formats a duration in microseconds with one decimal.
func us(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 1, 64)
}

func streamsLabel(n int) string {
	if n == 1 {
		return "1 stream"
	}
	return strconv.Itoa(n) + " streams"
}

// markdown returns the run's report.
func (res *results) markdown() string {
	var b strings.Builder
	cfg, m := res.cfg, res.machine
	mdreport.Heading(&b, "B6-DATAPATH: pod-to-pod TCP over the bridge plugin against a bare veth pair (B6 (a))", "bench/netbench", res.started, res.finished, cfg.Command)
	fmt.Fprintf(&b, "Two pods of one tenant on one node, attached by the bridge plugin (`%s` %s, launched through the plugin host "+
		"as the agent does), against two network namespaces joined by a bare veth pair with the same MTU (%d) and no bridge, "+
		"no nftables. Throughput: TCP from pod A to pod B, 128 KiB writes, the median of %d runs of %v (after %v unmeasured) "+
		"per path and stream count. Round trips: one byte each way on one connection, %s timed per run and path. "+
		"Goal (B6): the bridge adds at most %s µs per round trip; the bridge is the baseline that B6's overlays and routed "+
		"paths are held to (≥ 90%% and ≥ 97%% of its throughput).\n\n",
		res.plugin.Name, res.plugin.Version, res.mtu, cfg.Reps, cfg.Duration, cfg.Warmup, mdreport.Count(float64(cfg.RoundTrips)), us(goalAddedRR))

	t := mdreport.NewTable("Workload", "Bridge plugin", "Floor: bare veth pair", "Bridge / floor", "Bridge − floor")
	for _, s := range res.streams {
		br, fl := stats.Median(s.gbps[bridgePath]), stats.Median(s.gbps[floorPath])
		t.Row("TCP throughput, "+streamsLabel(s.streams)+" (Gbit/s)", gbit(br), gbit(fl), mdreport.Ratio(br, fl), fmt.Sprintf("%+.2f", br-fl))
	}
	brRR, flRR := stats.Summarize(slices.Clone(res.rr[bridgePath])), stats.Summarize(slices.Clone(res.rr[floorPath]))
	for _, q := range []struct {
		label  string
		br, fl time.Duration
	}{{"p50", brRR.P50, flRR.P50}, {"p99", brRR.P99, flRR.P99}} {
		t.Row("TCP round trip, 1 byte, "+q.label+" (µs)", us(q.br), us(q.fl), mdreport.Ratio(float64(q.br), float64(q.fl)), fmt.Sprintf("%+.1f µs", float64(q.br-q.fl)/1e3))
	}
	b.WriteString(t.String())
	goal := "met"
	if brRR.P50-flRR.P50 > goalAddedRR {
		goal = "missed"
	}
	fmt.Fprintf(&b, "\nAdded round-trip latency at p50: %s µs (goal ≤ %s µs per hop: %s).\n", us(brRR.P50-flRR.P50), us(goalAddedRR), goal)

	b.WriteString("\n### Raw samples\n\n")
	r := mdreport.NewTable("Workload", "Bridge plugin, each run", "Floor, each run")
	for _, s := range res.streams {
		r.Row("TCP throughput, "+streamsLabel(s.streams)+" (Gbit/s)", joinGbit(s.gbps[bridgePath]), joinGbit(s.gbps[floorPath]))
	}
	b.WriteString(r.String())
	b.WriteString("\n")
	l := mdreport.NewTable("Round trips", "Samples", "p50 µs", "p90 µs", "p99 µs", "max µs", "mean µs")
	for _, p := range []struct {
		label string
		s     stats.Latencies
	}{{res.bridge.name, brRR}, {res.floor.name, flRR}} {
		l.Row(p.label, mdreport.Count(float64(p.s.N)), us(p.s.P50), us(p.s.P90), us(p.s.P99), us(p.s.Max), us(p.s.Mean))
	}
	b.WriteString(l.String())

	b.WriteString("\n### How it was measured\n\n")
	fmt.Fprintf(&b, "* The bridge path: the plugin binary launched through plugins/pluginhost, configured with a bridge and nftables "+
		"tables of the run's own; SetupNode with pod range %s (cluster %s, services %s); two network namespaces (internal/netns) "+
		"attached with Attach under one tenant. Pod A's packets cross its veth pair, the bridge (with br_netfilter, so the plugin's "+
		"inet forward chain with the tenant isolation sees them, and its bridge prerouting chain with the anti-spoofing "+
		"checks), and pod B's veth pair. Pod B's address and the MTU come from the Attach answers.\n",
		cfg.PodCIDR, cfg.ClusterCIDR, cfg.ServiceCIDR)
	fmt.Fprintf(&b, "* The floor: two more namespaces and one veth pair made by netlink, MTU %d, %s and %s set by hand: the "+
		"least a pod-to-pod packet on one node can cross.\n", res.mtu, floorA, floorB)
	b.WriteString("* Sockets are Go's, made inside the namespaces (the listener in pod B, the dialer in pod A) and used from " +
		"ordinary goroutines; every run opens new connections. Throughput: a sender per connection writes 128 KiB buffers " +
		"in a loop, a receiver per connection reads into 128 KiB and counts; the measured window starts after the warm-up and " +
		"its Gbit/s is the bytes received in it over its length. Round trips: the client writes one byte and reads the echo, " +
		"timed from the write to the end of the read (Nagle off, as Go sets it); a tenth as many untimed round trips first.\n")
	b.WriteString("* The two paths run in turn for every workload and repetition, the first alternating between repetitions, " +
		"so that both meet the machine's noise alike. Throughput on this machine is bound by the CPUs: sender, receiver and " +
		"the kernel's softirq work share them, so the ratio says what the bridge's per-packet work costs; the spread of the runs (raw samples) shows how much of it is " +
		"the machine's noise. The round trips are the steadier measure.\n")
	b.WriteString("* The bench holds the machine-wide test lock (internal/testlock) for the whole run.\n")

	b.WriteString("\n### Machine\n\n")
	fmt.Fprintf(&b, "* CPUs: %d (`nproc`; affinity %s), %s; memory %s\n", m.NProc, m.Affinity, m.CPUModel, m.MemTotal)
	fmt.Fprintf(&b, "* Kernel: %s; plugin `%s` %s (API %s)\n", m.Kernel, res.plugin.Name, res.plugin.Version, strings.Join(res.plugin.APIVersions, ", "))
	fmt.Fprintf(&b, "* Bench process GOMAXPROCS %d; %s; source %s\n", m.GOMAXPROCS, m.GoVersion, m.Source)
	fmt.Fprintf(&b, "* Load average (1/5/15 min) before: %s; after: %s (the machine is shared: other builds may have run meanwhile)\n",
		m.LoadBefore, m.LoadAfter)
	return b.String()
}

func joinGbit(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = gbit(x)
	}
	return strings.Join(s, ", ")
}
