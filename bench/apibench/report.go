package apibench

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/paddock-dev/paddock/bench/internal/mdreport"
)

// results is everything a run measured.
type results struct {
	cfg               Config
	started, finished time.Time
	machine           machine
	workloads         []*workload
	watch             *watchResult
	objectBytes       int // stored size of the API objects and raw values
}

// summary is a workload's figures over its repetitions: the median of the
// per-repetition throughput and percentiles.
type summary struct {
	Rate          float64
	P50, P90, P99 time.Duration
	Ops           int
	CPUPerOp      time.Duration
	Cores         float64 // CPU time per wall time
	Stall         float64 // median CPU pressure, -1 unknown
}

func (w *workload) summary() summary {
	var rates, cores, stalls []float64
	var p50, p90, p99, cpu []time.Duration
	var s summary
	for _, r := range w.Runs {
		rates = append(rates, r.Rate())
		cpu = append(cpu, r.CPUPerOp())
		cores = append(cores, r.CPU.Seconds()/r.Elapsed.Seconds())
		stalls = append(stalls, r.Stall)
		p50 = append(p50, r.Lat.P50)
		p90 = append(p90, r.Lat.P90)
		p99 = append(p99, r.Lat.P99)
		s.Ops += r.Ops
	}
	s.Rate = median(rates)
	s.P50, s.P90, s.P99 = medianDuration(p50), medianDuration(p90), medianDuration(p99)
	s.CPUPerOp, s.Cores, s.Stall = medianDuration(cpu), median(cores), median(stalls)
	return s
}

func (res *results) find(id string, clients int) *workload {
	for _, w := range res.workloads {
		if w.ID == id && w.Clients == clients {
			return w
		}
	}
	return nil
}

// The goals and anchors of B4 (docs/benchmarks.md).
const (
	goalCreateRatio   = 0.70
	goalCreateP50     = 2 * time.Millisecond
	goalMutatingP99   = 50 * time.Millisecond
	goalWatchP99      = 100 * time.Millisecond
	goalWatcherBytes  = 500
	goalCreatesAt1000 = 15000
)

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

func clientsLabel(c int) string {
	if c == 1 {
		return "1 client"
	}
	return strconv.Itoa(c) + " clients"
}

// markdown returns the run's report: the summary table with goals, the
// raw samples and the machine.
func (res *results) markdown() string {
	var b strings.Builder
	cfg, m := res.cfg, res.machine
	mdreport.Heading(&b, "B4: API write path, store and watch fan-out", "bench/apibench", res.started, res.finished, cfg.Command)
	fmt.Fprintf(&b, "%d repetitions of %v each after a %v warm-up per workload; figures are the median over the repetitions "+
		"of the throughput and of the p50/p90/p99 within each repetition. Every repetition of a floor runs right before "+
		"the API workloads compared with it.\n\n", cfg.Reps, cfg.Duration, cfg.Warmup)

	t := newTable("Metric", "Value", "Floor", "Ratio", "Goal")
	for _, c := range cfg.Clients {
		if w := res.find("raw-put-small", c); w != nil {
			t.Row(fmt.Sprintf("raw etcd put, 8 B key / 256 B value, %s (puts/s)", clientsLabel(c)),
				rate(w.summary().Rate), "", "", "anchor: etcd 583/s at 1 client, 44,341/s at 1,000 clients on 3 × 8 vCPU")
		}
	}
	for _, c := range cfg.Clients {
		raw := res.find("raw-put", c)
		var rs summary
		if raw != nil {
			rs = raw.summary()
		}
		for _, id := range []string{"api-create-admin", "api-create-edit"} {
			w := res.find(id, c)
			if w == nil {
				continue
			}
			s := w.summary()
			ratio, goal := "", fmt.Sprintf("≥ %.2f × floor", goalCreateRatio)
			if raw != nil {
				r := s.Rate / rs.Rate
				ratio, goal = fmt.Sprintf("%.2f", r), goal+": "+verdict(r >= goalCreateRatio)
			}
			if c >= 64 {
				goal += fmt.Sprintf(" (B4 also: ≥ %s/s at 1,000 clients)", rate(goalCreatesAt1000))
			}
			t.Row(fmt.Sprintf("%s of %d B ConfigMaps, %s (creates/s)", w.Label, res.objectBytes, clientsLabel(c)),
				rate(s.Rate), floorRate(raw, rs, "raw puts/s"), ratio, goal)
		}
		if w := res.find("api-create-edit", c); w != nil && raw != nil && c > 1 {
			s := w.summary()
			t.Row(fmt.Sprintf("process CPU per create, tenant edit, %s (µs)", clientsLabel(c)), rate(us(s.CPUPerOp)), rate(us(rs.CPUPerOp))+" per raw put",
				fmt.Sprintf("%.1f", float64(s.CPUPerOp)/float64(max(rs.CPUPerOp, 1))), "none; what the ratio above costs in CPU")
		}
		if w := res.find("api-create-edit", c); w != nil {
			s := w.summary()
			if c == 1 {
				t.Row("API create p50 / p99, tenant edit, 1 client (ms)", ms(s.P50)+" / "+ms(s.P99), floorLat(raw, rs),
					ifFloor(raw, fmt.Sprintf("+%s ms at p50", ms(s.P50-rs.P50))),
					fmt.Sprintf("p50 ≤ %s ms and ≤ floor + 0.4 ms: %s", ms(goalCreateP50), verdict(s.P50 <= goalCreateP50 && (raw == nil || s.P50-rs.P50 <= 400*time.Microsecond))))
			} else {
				t.Row(fmt.Sprintf("API create p50 / p99, tenant edit, %s (ms)", clientsLabel(c)), ms(s.P50)+" / "+ms(s.P99), floorLat(raw, rs),
					ifFloor(raw, fmt.Sprintf("%.1f× at p99", float64(s.P99)/float64(max(rs.P99, 1)))),
					fmt.Sprintf("mutating p99 ≤ %s ms: %s", ms(goalMutatingP99), verdict(s.P99 <= goalMutatingP99)))
			}
		}
	}
	for _, c := range cfg.Clients {
		raw, w := res.find("raw-get", c), res.find("api-get-edit", c)
		if w == nil {
			continue
		}
		var rs summary
		if raw != nil {
			rs = raw.summary()
		}
		s := w.summary()
		t.Row(fmt.Sprintf("API get, tenant edit, %s (gets/s)", clientsLabel(c)), rate(s.Rate), floorRate(raw, rs, "raw gets/s"),
			ifFloor(raw, fmt.Sprintf("%.2f", s.Rate/rs.Rate)), "anchor: 16,623 etcd reads/s on 2 vCPU")
		t.Row(fmt.Sprintf("API get p50 / p99, %s (ms)", clientsLabel(c)), ms(s.P50)+" / "+ms(s.P99), floorLat(raw, rs),
			ifFloor(raw, fmt.Sprintf("+%s ms at p50", ms(s.P50-rs.P50))), "p99 ≤ 1000 ms (API SLO): "+verdict(s.P99 <= time.Second))
	}
	if wr := res.watch; wr != nil {
		var p50, p99 []time.Duration
		var exp, got int64
		var rates []float64
		for _, r := range wr.Reps {
			p50, p99 = append(p50, r.Lat.P50), append(p99, r.Lat.P99)
			exp, got = exp+r.Expected, got+r.Delivered
			rates = append(rates, float64(r.Writes)/r.Elapsed.Seconds())
		}
		wp99 := medianDuration(p99)
		t.Row(fmt.Sprintf("watch write→delivery p50 / p99, %s watchers, %d updates/s asked, %.0f made (ms)", rate(float64(wr.Watchers)), wr.Rate, median(rates)),
			ms(medianDuration(p50))+" / "+ms(wp99), "", "",
			fmt.Sprintf("p99 ≤ %s ms (at 10,000 watchers): %s", ms(goalWatchP99), verdict(wp99 <= goalWatchP99 && got == exp)))
		t.Row("watch deliveries received / expected", fmt.Sprintf("%s / %s", rate(float64(got)), rate(float64(exp))), "", fmt.Sprintf("%.4f", float64(got)/float64(max(exp, 1))), "all")
		n := int64(wr.Watchers)
		mem := wr.Mem
		t.Row("memory per watcher, whole process: heap / heap + stacks (B)",
			fmt.Sprintf("%s / %s", rate(float64(mem.HeapInuse/n)), rate(float64((mem.HeapInuse+mem.StackInuse)/n))), "", "",
			fmt.Sprintf("≤ %d B (server side): see the next row", goalWatcherBytes))
		serverHeap := mem.Heap["server"] / n
		serverStacks := int64(mem.Goroutine["server"]) * mem.avgStack() / n
		t.Row("memory per watcher, server side: heap / heap + stacks (est.) (B)",
			fmt.Sprintf("%s / %s", rate(float64(serverHeap)), rate(float64(serverHeap+serverStacks))), "", "",
			fmt.Sprintf("≤ %d B: %s", goalWatcherBytes, verdict(serverHeap+serverStacks <= goalWatcherBytes)))
	}
	b.WriteString(t.String())

	b.WriteString("\n### Raw samples\n\n")
	d := newTable("Workload", "Clients", "Conns", "Per second (median)", "p50 ms", "p90 ms", "p99 ms", "Per second, each repetition", "Ops", "CPU µs/op", "Cores busy", "CPU pressure")
	for _, w := range res.workloads {
		s := w.summary()
		var each []string
		for _, r := range w.Runs {
			each = append(each, rate(r.Rate()))
		}
		conns := "etcd gRPC client"
		if strings.HasPrefix(w.ID, "api-") {
			conns = strconv.Itoa(min(cfg.Conns, w.Clients))
		}
		stall := "n/a"
		if s.Stall >= 0 {
			stall = fmt.Sprintf("%.0f%%", 100*s.Stall)
		}
		d.Row(w.Label, strconv.Itoa(w.Clients), conns, rate(s.Rate)+" "+w.Unit, ms(s.P50), ms(s.P90), ms(s.P99), strings.Join(each, ", "), rate(float64(s.Ops)),
			rate(float64(s.CPUPerOp)/float64(time.Microsecond)), fmt.Sprintf("%.2f", s.Cores), stall)
	}
	b.WriteString(d.String())
	if wr := res.watch; wr != nil {
		b.WriteString("\n")
		wt := newTable("Watch repetition", "Updates", "Delivered / expected", "p50 ms", "p90 ms", "p99 ms", "max ms")
		for i, r := range wr.Reps {
			wt.Row(strconv.Itoa(i+1), strconv.Itoa(r.Writes), fmt.Sprintf("%d / %d", r.Delivered, r.Expected),
				ms(r.Lat.P50), ms(r.Lat.P90), ms(r.Lat.P99), ms(r.Lat.Max))
		}
		b.WriteString(wt.String())
		mem := wr.Mem
		fmt.Fprintf(&b, "\nStreams the server ended (a watcher that falls too far behind is cut off) and the watcher resumed from the last "+
			"resourceVersion it saw, as a client does: %d.\n", wr.Resumed)
		fmt.Fprintf(&b, "\nOpening %d watchers over %d connections took %v. Memory of the open watchers, after minus before, whole process: "+
			"heap in use %s B, stacks %s B, %d goroutines (%.1f per watcher: %d server, %d client, %d other). "+
			"Heap by owner from the heap profile: server %s B, client %s B, other %s B.\n",
			wr.Watchers, wr.Conns, wr.Open.Round(time.Millisecond),
			rate(float64(mem.HeapInuse)), rate(float64(mem.StackInuse)), mem.Goroutines, float64(mem.Goroutines)/float64(wr.Watchers),
			mem.Goroutine["server"], mem.Goroutine["client"], mem.Goroutine["other"],
			rate(float64(mem.Heap["server"])), rate(float64(mem.Heap["client"])), rate(float64(mem.Heap["other"])))
		b.WriteString("\nWhere the open watchers' memory is, per watcher (heap by the innermost frame that tells the owner; goroutines by the same rule):\n\n")
		st := newTable("Site", "Heap B per watcher", "Goroutines per watcher", "Their stacks, B per watcher (est.)")
		for _, k := range topSites(mem, 12) {
			st.Row("`"+k+"`", rate(float64(mem.Heap[k])/float64(wr.Watchers)), fmt.Sprintf("%.2f", float64(mem.Goroutine[k])/float64(wr.Watchers)),
				rate(float64(int64(mem.Goroutine[k])*mem.avgStack())/float64(wr.Watchers)))
		}
		b.WriteString(st.String())
	}

	b.WriteString("\n### How it was measured\n\n")
	b.WriteString("* One process holds everything: the API server started as `paddock server` starts it (`server.Run`: embedded etcd, " +
		"TLS with its own CA, bearer-token authn, authz, admission, audit log to a file on the same disk), the load generator " +
		"(core/client over HTTPS/HTTP 2 on loopback), and the floor, a second embedded etcd member with the same configuration " +
		"in its own directory on the same disk, driven through etcd's gRPC client over the member's unix socket — the path the API server's " +
		"store takes, and the way etcd's own benchmark tool measures (over gRPC). The API's figures also include the CPU of its own clients (JSON, TLS).\n")
	fmt.Fprintf(&b, "* API creates are ConfigMaps in tenant %q whose stored JSON is %d B; the floor puts the same bytes under the same key shape "+
		"(`/paddock/configmaps/TENANT/NAME`). A create is a transaction that also checks that the tenant exists; the floor is a plain put.\n",
		benchTenant, res.objectBytes)
	fmt.Fprintf(&b, "* The API clients are spread over %d HTTP/2 connections (one client.Client each); each client sends its next request when "+
		"the previous one returns (closed loop).\n", cfg.Conns)
	b.WriteString("* Watch latency is from just before the update is sent (its time travels in an annotation) to the moment the " +
		"watcher's goroutine receives the decoded event, so it includes the write's own commit. Memory per watcher is the whole " +
		"process's `runtime.MemStats` delta (after a GC) across opening the watchers, divided by their number: it counts the watch " +
		"clients (core/client keeps a 64 KiB line buffer per stream) as well as the server. The server-side figure splits the heap " +
		"by the innermost frame of each allocation's stack that belongs to the server or the client (the heap profile records every " +
		"allocation while the watchers open), and the stacks by the owner of each goroutine.\n")
	b.WriteString("* CPU µs/op is the whole process's CPU time (getrusage: API server, both etcd members, load generator) during a repetition " +
		"divided by its operations; cores busy is that CPU time over the wall time. CPU pressure is the share of the repetition during which " +
		"some task on the machine waited for a CPU (Linux PSI `/proc/pressure/cpu`); it counts the run's own threads too, so compare it " +
		"across rows: a high value with fewer than GOMAXPROCS cores busy points at other work on the machine.\n")

	b.WriteString("\n### Machine\n\n")
	fmt.Fprintf(&b, "* CPUs: %d (`nproc`; affinity %s), %s; memory %s\n", m.NProc, m.Affinity, m.CPUModel, m.MemTotal)
	fmt.Fprintf(&b, "* Kernel: %s; cgroup v2 the only hierarchy: %s\n", m.Kernel, m.Cgroup)
	fmt.Fprintf(&b, "* Disk under the data directory (`df`): %s; block device %s\n", m.Disk, m.Rotational)
	fmt.Fprintf(&b, "* fdatasync probe (%d × write %d B + fdatasync, as `fio --rw=write --ioengine=sync --fdatasync=1 --bs=2300`): p50 %s ms, p99 %s ms, max %s ms\n",
		m.Fsync.N, m.Fsync.BlockSize, ms(m.Fsync.P50), ms(m.Fsync.P99), ms(m.Fsync.Max))
	fmt.Fprintf(&b, "* GOMAXPROCS %d; %s; etcd %s; source %s\n", m.GOMAXPROCS, m.GoVersion, m.Etcd, m.Source)
	fmt.Fprintf(&b, "* Load average (1/5/15 min) before: %s; after: %s (the machine is shared: other builds may have run meanwhile)\n",
		m.LoadBefore, m.LoadAfter)
	return b.String()
}

// topSites returns the n sites with the largest heap or goroutine
// growth, largest first.
func topSites(mem watchMemory, n int) []string {
	weight := map[string]int64{}
	stack := mem.avgStack()
	for k, v := range mem.Heap {
		if strings.Contains(k, ": ") {
			weight[k] += v
		}
	}
	for k, v := range mem.Goroutine {
		if strings.Contains(k, ": ") {
			weight[k] += int64(v) * stack
		}
	}
	keys := make([]string, 0, len(weight))
	for k, v := range weight {
		if v > 0 {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Compare(weight[b], weight[a]) })
	return keys[:min(n, len(keys))]
}

// avgStack returns the stack bytes per goroutine the watchers added.
func (m watchMemory) avgStack() int64 {
	if m.Goroutines <= 0 {
		return 0
	}
	return m.StackInuse / int64(m.Goroutines)
}

func floorRate(floor *workload, s summary, unit string) string {
	if floor == nil {
		return "not run"
	}
	return rate(s.Rate) + " " + unit
}

func floorLat(floor *workload, s summary) string {
	if floor == nil {
		return "not run"
	}
	return ms(s.P50) + " / " + ms(s.P99)
}

func ifFloor(floor *workload, s string) string {
	if floor == nil {
		return ""
	}
	return s
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// The B4 section of docs/benchmarks.md (see bench/internal/mdreport).
const sectionName = "B4"

var (
	sectionBegin     = mdreport.Begin(sectionName)
	sectionEnd       = mdreport.End(sectionName)
	benchmarksHeader = mdreport.Header
)

// section wraps a report in the markers.
func (res *results) section(report string) string { return mdreport.Wrap(sectionName, report) }

// writeSection replaces the B4 section of the Markdown file at path with
// section, as mdreport.Replace does.
func writeSection(path, section string) error { return mdreport.Replace(path, sectionName, section) }

// Formats shared with the other benchmarks.
var (
	newTable = mdreport.NewTable
	rate     = mdreport.Count
	ms       = mdreport.Ms
)
