package schedbench

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/paddock-dev/paddock/bench/internal/machine"
	"github.com/paddock-dev/paddock/bench/internal/mdreport"
	"github.com/paddock-dev/paddock/bench/internal/stats"
)

// sectionName names B1's section of docs/benchmarks.md.
const sectionName = "B1"

// The goals: the (at least the best-known managed service's
// rate, well above the Kubernetes CI floor) and the design notes'.
const (
	goalRate       = 1000.0
	designRate     = 4000.0
	designP99      = 50 * time.Millisecond
	kubernetesRate = 680.0 // scheduler_perf SchedulingBasic 5000Nodes_10000Pods CI floor
)

// results is everything a run measured.
type results struct {
	cfg               Config
	started, finished time.Time
	machine           machine.Info

	// The burst (pods created while the scheduler binds them), from the
	// first create; each pod's latency from its create returning and from
	// the scheduler queueing it to its binding committed; how long the
	// creates took.
	burst           phase
	created, queued []time.Duration
	createdIn       time.Duration
	// The backlog (as many pods waiting when a scheduler starts), from
	// the scheduler's start, and when its first binding was committed.
	backlog      phase
	backlogFirst time.Time
	maxPerNode   int
	nodesUsed    int

	floor floorResult
}

// throughput summarises per-second placement samples as scheduler_perf
// does: the mean, and percentiles taken as the ceil(n·p/100)-th smallest.
type throughput struct {
	N                  int
	Avg, P50, P90, P99 float64
}

func summarizeThroughput(samples []float64) throughput {
	n := len(samples)
	if n == 0 {
		return throughput{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	var sum float64
	for _, v := range s {
		sum += v
	}
	at := func(p float64) float64 { return s[int(math.Ceil(float64(n)*p/100))-1] }
	return throughput{N: n, Avg: sum / float64(n), P50: at(50), P90: at(90), P99: at(99)}
}

// rate is a phase's binds per second: every pod over the phase.
func (res *results) rate(ph phase) float64 { return float64(res.cfg.Pods) / ph.elapsed.Seconds() }

// cpuPer1000 is CPU seconds per 1,000 pods of a share of a phase's CPU
// time: the labels' shares added up ("" for the unlabelled rest), all of
// it with no labels; "n/a" when the phase was not profiled.
func (res *results) cpuPer1000(ph phase, labels ...string) string {
	share := 1.0
	if len(labels) > 0 {
		if ph.cpuShares == nil {
			return "n/a"
		}
		share = 0
		for _, l := range labels {
			share += ph.cpuShares[l]
		}
	}
	v := strconv.FormatFloat(ph.cpu.Seconds()*share*1000/float64(res.cfg.Pods), 'f', 2, 64)
	if len(labels) > 0 {
		v += fmt.Sprintf(" (%.0f%%)", 100*share)
	}
	return v
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

func rateStr(v float64) string { return mdreport.Count(v) }

// markdown returns the run's report.
func (res *results) markdown() string {
	cfg, m := res.cfg, res.machine
	tp, btp := summarizeThroughput(res.burst.samples), summarizeThroughput(res.backlog.samples)
	lat, qlat, fl := stats.Summarize(slices.Clone(res.created)), stats.Summarize(slices.Clone(res.queued)), stats.Summarize(slices.Clone(res.floor.Latencies))
	rate, floorRate := res.rate(res.burst), res.floor.Rate()
	// The backlog's binds/s from its first binding: before it, the new
	// scheduler lists the cluster.
	backlogRate := float64(cfg.Pods) / (res.backlog.elapsed - res.backlogListed()).Seconds()
	headline, backlogHeadline := tp.Avg, btp.Avg
	if tp.N == 0 {
		headline = rate // too short a phase for one sample
	}
	if btp.N == 0 {
		backlogHeadline = backlogRate
	}

	var b strings.Builder
	mdreport.Heading(&b, fmt.Sprintf("B1: scheduler throughput (%s nodes, %s pods)", mdreport.Count(float64(cfg.Nodes)), mdreport.Count(float64(cfg.Pods))), "bench/schedbench", res.started, res.finished, cfg.Command)
	fmt.Fprintf(&b, "%s simulated nodes (Node objects: %s cpu, %s, %d pods, Ready, runc, %d racks) carry %s pre-placed pods. "+
		"**Burst:** %s pending pods (%s cpu, %s each) are created by %d goroutines over %d connections, spread over %d tenants, while the scheduling loop of core/controller "+
		"binds them through the API (`POST …/pods/NAME/binding`, one compare-and-swap in etcd each, up to %d in flight). "+
		"**Backlog:** with the scheduler stopped, as many pods again are created; then a new scheduler (as after a leader change) starts and binds them. "+
		"**Floor:** %s raw etcd compare-and-swap updates of pod keys from %d goroutines, in the same run.\n\n",
		mdreport.Count(float64(cfg.Nodes)), nodeCPU, nodeMemory, maxPodsPerNode, racks, mdreport.Count(float64(cfg.PrePlaced)),
		mdreport.Count(float64(cfg.Pods)), podCPU, podMemory, cfg.Creators, cfg.Conns, cfg.Tenants, cfg.Binders,
		mdreport.Count(float64(res.floor.Updates)), res.floor.Goroutines)

	t := mdreport.NewTable("Metric", "Burst", "Backlog", "Floor: raw etcd CAS", "Floor / burst, backlog", "Goal")
	t.Row("placement throughput, per-second samples: avg (pods/s)", rateStr(tp.Avg), rateStr(btp.Avg), rateStr(floorRate),
		mdreport.Ratio(floorRate, tp.Avg)+", "+mdreport.Ratio(floorRate, btp.Avg),
		fmt.Sprintf("≥ %s: burst **%s**, backlog **%s**; design notes ≥ %s on 2 vCPU: %s, %s; Kubernetes CI floor %s",
			rateStr(goalRate), verdict(headline >= goalRate), verdict(backlogHeadline >= goalRate),
			rateStr(designRate), verdict(headline >= designRate), verdict(backlogHeadline >= designRate), rateStr(kubernetesRate)))
	t.Row("per-second samples: p50 / p90 / p99 (pods/s)", fmt.Sprintf("%s / %s / %s", rateStr(tp.P50), rateStr(tp.P90), rateStr(tp.P99)),
		fmt.Sprintf("%s / %s / %s", rateStr(btp.P50), rateStr(btp.P90), rateStr(btp.P99)), "", "", fmt.Sprintf("%d and %d samples", tp.N, btp.N))
	t.Row("binds/s overall (burst: first create to last binding; backlog: first to last binding)", rateStr(rate), rateStr(backlogRate), rateStr(floorRate),
		mdreport.Ratio(floorRate, rate)+", "+mdreport.Ratio(floorRate, backlogRate), "")
	t.Row("per pod, create returned → binding committed, p50 / p99 (ms)", mdreport.Ms(lat.P50)+" / "+mdreport.Ms(lat.P99), "",
		mdreport.Ms(fl.P50)+" / "+mdreport.Ms(fl.P99), mdreport.Ratio(float64(lat.P99), float64(fl.P99))+" at p99 (burst / floor)",
		fmt.Sprintf("design notes p99 ≤ %s ms: %s", mdreport.Ms(designP99), verdict(lat.P99 <= designP99)))
	t.Row("per pod, queued by the scheduler → binding committed, p50 / p99 (ms)", mdreport.Ms(qlat.P50)+" / "+mdreport.Ms(qlat.P99), "", "", "", "")
	t.Row("pods created per second (the burst's arrival rate)", rateStr(float64(cfg.Pods)/res.createdIn.Seconds()), "", "", "", "")
	t.Row("new scheduler's start to its first binding (lists the cluster)", "", mdreport.Ms(res.backlogListed())+" ms", "", "", "")
	t.Row("CPU-seconds per 1,000 pods, whole process", res.cpuPer1000(res.burst), res.cpuPer1000(res.backlog), "", "", "")
	for _, row := range []struct {
		label  string
		labels []string
	}{
		{"… of which the scheduler (its goroutines: informers, decisions, binds' client side)", []string{labelScheduler}},
		{"… the API server and etcd (everything else)", []string{""}},
		{"… the pod creators (client side)", []string{labelCreators}},
	} {
		t.Row(row.label, res.cpuPer1000(res.burst, row.labels...), res.cpuPer1000(res.backlog, row.labels...), "", "", "")
	}
	b.WriteString(t.String())

	arrival := float64(cfg.Pods) / res.createdIn.Seconds()
	b.WriteString("\nReading: ")
	if rate >= 0.95*arrival {
		fmt.Fprintf(&b, "in the burst the bindings kept pace with the creates (%s pods/s arrived, %s bound/s; a pod waited %s ms at the median "+
			"from being queued to its binding): the creates set the pace, and with them the process spent %s CPU-seconds per 1,000 pods, "+
			"%s of it in the API server and etcd. ", rateStr(arrival), rateStr(rate), mdreport.Ms(qlat.P50), res.cpuPer1000(res.burst), res.cpuPer1000(res.burst, ""))
	} else {
		fmt.Fprintf(&b, "in the burst the bindings fell behind the creates (%s pods/s arrived, %s bound/s). ", rateStr(arrival), rateStr(rate))
	}
	fmt.Fprintf(&b, "The backlog is what the loop and the binding path do alone: %s binds/s at %s CPU-seconds per 1,000 pods, %s of them the scheduler's.\n",
		rateStr(backlogRate), res.cpuPer1000(res.backlog), res.cpuPer1000(res.backlog, labelScheduler))
	fmt.Fprintf(&b, "\nEvery pod ended bound (checked by listing them): %s nodes used, at most %d pods on one.\n",
		mdreport.Count(float64(res.nodesUsed)), res.maxPerNode)

	b.WriteString("\n### Raw samples\n\n")
	for _, ph := range []struct {
		name string
		ph   phase
	}{{"burst", res.burst}, {"backlog", res.backlog}} {
		vals := make([]string, len(ph.ph.samples))
		for i, v := range ph.ph.samples {
			vals[i] = rateStr(v)
		}
		fmt.Fprintf(&b, "Per-second placement samples of the %s (pods/s, in order): %s\n\n", ph.name, orNone(strings.Join(vals, " ")))
	}
	d := mdreport.NewTable("Latency", "n", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms")
	for _, row := range []struct {
		label string
		l     stats.Latencies
	}{{"create returned → binding committed", lat}, {"queued by the scheduler → binding committed", qlat}, {"floor: one compare-and-swap", fl}} {
		d.Row(row.label, strconv.Itoa(row.l.N), mdreport.Ms(row.l.P50), mdreport.Ms(row.l.P90), mdreport.Ms(row.l.P99), mdreport.Ms(row.l.Max), mdreport.Ms(row.l.Mean))
	}
	b.WriteString(d.String())

	b.WriteString("\n### How it was measured\n\n")
	b.WriteString("* One process holds everything: the control plane as `paddock server` runs it (core/server: embedded etcd, TLS, token authn, " +
		"authz, admission, audit log on disk; its controllers off), the scheduling loop (controller.RunScheduler, the loop the elected " +
		"leader runs, with its own cluster-admin client over HTTP/2 and TLS) and the clients creating pods.\n")
	b.WriteString("* Setup, untimed: tenants, the nodes and the pre-placed pods through the API (cluster admins may create pods bound to a " +
		"node); then the scheduler starts and must bind a warm-up pod, so that its informers have listed everything, before the burst.\n")
	b.WriteString("* Placement throughput is computed as Kubernetes' scheduler_perf throughput collector does: every second the count of " +
		"bound pods is read (here: bindings committed, counted when the API answered the binding); the first sample after the first binding " +
		"is skipped; a second without a new binding is folded into the next sample, recorded once per second it spans; the average and " +
		"the ceil(n·p/100)-th smallest sample are reported. The samples stop when the last pod is bound.\n")
	b.WriteString("* Backlog: the burst's scheduler is stopped, the backlog's pods are created (untimed), then a new scheduler starts " +
		"and the phase runs from its start to the last binding; its binds/s count from its first binding, after it has listed " +
		"the cluster. Nothing else competes for the CPU then: it is what the loop and the binding path can do.\n")
	fmt.Fprintf(&b, "* The pods are spread over %d tenants because the API server admits one tenant's pod creates one at a time "+
		"(each updates the tenant's quota usage in the same transaction); the arrival rate row shows whether creates kept ahead of the scheduler.\n", cfg.Tenants)
	b.WriteString("* CPU: the process's user + system time (getrusage) from the first create to the last binding, divided among the " +
		"scheduler, the creators and the rest by a CPU profile of the same window in which the scheduler's and the creators' goroutines " +
		"carry pprof labels (goroutines inherit them; the API server's handlers of the scheduler's requests count as the control plane's).\n")
	b.WriteString("* Floor: a second etcd member, started as the store starts its embedded one, in its own directory on the same disk, " +
		"after the burst. The pods' stored JSON is put under the store's keys, then each key is swapped for the bound pod's JSON by a " +
		"transaction comparing its mod revision, from as many goroutines as the scheduler keeps binds in flight: the commit a binding " +
		"needs, without the API server, the read before it or the scheduler.\n")

	b.WriteString("\n### Machine\n\n")
	fmt.Fprintf(&b, "* CPUs: %d (`nproc`; affinity %s), %s; memory %s; kernel %s\n", m.NProc, m.Affinity, m.CPUModel, m.MemTotal, m.Kernel)
	fmt.Fprintf(&b, "* GOMAXPROCS %d; %s; source %s\n", m.GOMAXPROCS, m.GoVersion, m.Source)
	fmt.Fprintf(&b, "* Load average (1/5/15 min) before: %s; after: %s (the machine is shared: other builds may have run meanwhile)\n",
		m.LoadBefore, m.LoadAfter)
	return b.String()
}

// backlogListed is how long the backlog's scheduler took from its start
// to its first binding.
func (res *results) backlogListed() time.Duration {
	if res.backlogFirst.IsZero() {
		return 0
	}
	return res.backlogFirst.Sub(res.backlog.began)
}

func orNone(s string) string {
	if s == "" {
		return "none (the burst was shorter than two sampling intervals)"
	}
	return s
}
