package runtimebench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/paddock-dev/paddock/bench/internal/mdreport"
	"github.com/paddock-dev/paddock/bench/internal/stats"
)

// The goals of B3: the ratio to bare runc, and the design notes'
// absolute marks (which assume networking, CNI included; this run's
// containers join a ready network namespace), and for pod starts the
// gvisor class's against runc's and the design notes' runsc-systrap
// marks.
const (
	goalRatio         = 1.5
	goalP50           = 60 * time.Millisecond
	goalP99           = 120 * time.Millisecond
	goalStarts        = 50.0 // per second at concurrency 10
	goalGvisorRatio   = 2.0  // gvisor p50 / runc p50
	goalGvisorP50     = 150 * time.Millisecond
	goalGvisorStretch = 115 * time.Millisecond
)

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

// ready returns the phase's start→running latencies.
func (p *phase) ready() stats.Latencies {
	return p.latencies(func(s sample) time.Duration { return s.Ready })
}

func (p *phase) latencies(of func(sample) time.Duration) stats.Latencies {
	d := make([]time.Duration, len(p.Samples))
	for i, s := range p.Samples {
		d[i] = of(s)
	}
	return stats.Summarize(d)
}

// cpuPerStart is the phase's CPU time per start in milliseconds.
func cpuPerStart(total time.Duration, p *phase) float64 {
	return float64(total) / float64(time.Millisecond) / float64(max(1, len(p.Samples)))
}

func ratio(a, b float64) string {
	if b <= 0 {
		return "n/a"
	}
	return strconv.FormatFloat(a/b, 'f', 2, 64)
}

func msf(v float64) string { return mdreport.Ms(time.Duration(v * float64(time.Millisecond))) }

// step is one row of a table of where starts spend their time: of
// returns its share of a sample.
type step struct {
	label string
	of    func(sample) time.Duration
}

// stepTable returns a table with the given header of each step's p50 /
// p99 in each phase, one column per phase.
func stepTable(header []string, steps []step, phases ...*phase) string {
	t := mdreport.NewTable(header...)
	for _, st := range steps {
		cells := []string{st.label}
		for _, p := range phases {
			cells = append(cells, pct(p.latencies(st.of)))
		}
		t.Row(cells...)
	}
	return t.String()
}

// markdown returns the run's report.
func (res *results) markdown() string {
	var b strings.Builder
	cfg, m := res.cfg, res.machine
	fmt.Fprintf(&b, "## B3: pod and container start through the runtime plugins (runc, gVisor, containerd)\n\n")
	fmt.Fprintf(&b, "Measured %s by `paddock-bench` (bench/runtimebench); %s.\n\n",
		res.started.UTC().Format("2006-01-02 15:04 MST"), res.finished.Sub(res.started).Round(time.Second))
	fmt.Fprintf(&b, "```\n%s\n```\n\n", cfg.Command)
	res.podMarkdown(&b)
	b.WriteString("\n### Container start in an existing pod (runc class)\n\n")
	fmt.Fprintf(&b, "A start is create + start until the container's process runs, with the image present: through the plugin "+
		"(`%s` %s, launched through plugins/pluginhost as the node agent launches it) against the floor, bare `runc run` of the "+
		"plugin's own bundle, in the same run; `runc create` + `runc start` of the bundle, what the plugin's shim runs, is measured "+
		"alongside. %d sequential starts of each, in turn, after %d unmeasured ones; then %d starts at concurrency %d, floor first.\n\n",
		res.plugin.Name, res.plugin.Version, cfg.Starts, cfg.Warmup, cfg.Starts, cfg.Concurrency)

	sp, sf := res.seqPlugin.ready(), res.seqFloor.ready()
	cp, cf := res.conPlugin.ready(), res.conFloor.ready()
	t := mdreport.NewTable("Metric", "Plugin", "Floor: `runc run`", "Ratio", "Goal")
	r50 := float64(sp.P50) / float64(max(1, sf.P50))
	t.Row("start → process runs, sequential, p50 (ms)", mdreport.Ms(sp.P50), mdreport.Ms(sf.P50), ratio(float64(sp.P50), float64(sf.P50)),
		fmt.Sprintf("≤ %.1f × floor: **%s**; B3: ≤ %s ms with networking: %s", goalRatio, verdict(r50 <= goalRatio), mdreport.Ms(goalP50), verdict(sp.P50 <= goalP50)))
	t.Row("start → process runs, sequential, p99 (ms)", mdreport.Ms(sp.P99), mdreport.Ms(sf.P99), ratio(float64(sp.P99), float64(sf.P99)),
		fmt.Sprintf("B3: ≤ %s ms with networking: %s", mdreport.Ms(goalP99), verdict(sp.P99 <= goalP99)))
	t.Row(fmt.Sprintf("starts/s at concurrency %d (%d starts)", cfg.Concurrency, cfg.Starts),
		fmt.Sprintf("%.1f", res.conPlugin.Rate()), fmt.Sprintf("%.1f", res.conFloor.Rate()), ratio(res.conPlugin.Rate(), res.conFloor.Rate()),
		fmt.Sprintf("B3: ≥ %.0f/s at concurrency 10 on 2 vCPU: %s", goalStarts, verdict(res.conPlugin.Rate() >= goalStarts)))
	t.Row(fmt.Sprintf("start → process runs at concurrency %d, p50 / p99 (ms)", cfg.Concurrency),
		mdreport.Ms(cp.P50)+" / "+mdreport.Ms(cp.P99), mdreport.Ms(cf.P50)+" / "+mdreport.Ms(cf.P99), ratio(float64(cp.P50), float64(cf.P50))+" at p50", "")
	st := res.seqTwoStep.ready()
	t.Row("the same against `runc create` + `runc start` (what the plugin's shim runs), sequential, p50 / p99 (ms)",
		mdreport.Ms(sp.P50)+" / "+mdreport.Ms(sp.P99), mdreport.Ms(st.P50)+" / "+mdreport.Ms(st.P99), ratio(float64(sp.P50), float64(st.P50))+" at p50", "none; tells the plugin's own cost from the second runc call's")
	seqCPU, floorCPU := cpuPerStart(res.seqPlugin.CPU, res.seqPlugin), cpuPerStart(res.seqFloor.CPU, res.seqFloor)
	t.Row("CPU per start, start to removal, sequential (ms)", msf(seqCPU), msf(floorCPU), ratio(seqCPU, floorCPU),
		"anchor: runc create 88 ms wall vs 10 ms CPU")
	t.Row("of which the plugin process itself (ms)", msf(cpuPerStart(res.seqPlugin.PluginCPU, res.seqPlugin)), "", "", "")
	b.WriteString(t.String())

	b.WriteString("\nWhere a sequential start spends its time, from the moment it begins (CreateContainer sent; `runc create` forked); " +
		"a start is done when its start step has returned and its process runs:\n\n")
	b.WriteString(stepTable([]string{"Step", "Plugin p50 / p99 ms", "`runc create` + `runc start` p50 / p99 ms"}, []step{
		{"create: CreateContainer (root filesystem, OCI bundle, record) / `runc create`", func(s sample) time.Duration { return s.Create }},
		{"start: StartContainer (shim: `runc create` + `runc start`) / `runc start`", func(s sample) time.Duration { return s.Start - s.Create }},
		{"process's marker read, after the start step returned (negative: before)", func(s sample) time.Duration { return s.Marker - s.Start }},
		{"the whole start", func(s sample) time.Duration { return s.Ready }},
	}, res.seqPlugin, res.seqTwoStep))

	b.WriteString("\n### Raw samples\n\n")
	d := mdreport.NewTable("Workload", "Concurrency", "Starts", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms", "Starts/s", "CPU ms per start")
	all := append([]*phase{res.seqPlugin, res.seqFloor, res.seqTwoStep, res.conPlugin, res.conFloor}, res.podPhases()...)
	for _, p := range all {
		l := p.ready()
		cpu := "not measured"
		if p.CPU > 0 {
			cpu = msf(cpuPerStart(p.CPU, p))
		}
		d.Row(p.Workload, strconv.Itoa(p.Concurrency), strconv.Itoa(len(p.Samples)), mdreport.Ms(l.P50), mdreport.Ms(l.P90),
			mdreport.Ms(l.P99), mdreport.Ms(l.Max), mdreport.Ms(l.Mean), fmt.Sprintf("%.1f", p.Rate()), cpu)
	}
	b.WriteString(d.String())
	b.WriteString("\nEvery start → process-runs latency in ms, in the order the starts began:\n\n")
	for _, p := range all {
		vals := make([]string, len(p.Samples))
		for i, s := range p.Samples {
			vals[i] = mdreport.Ms(s.Ready)
		}
		fmt.Fprintf(&b, "* %s, concurrency %d: %s\n", p.Workload, p.Concurrency, strings.Join(vals, " "))
	}

	b.WriteString("\n### How it was measured\n\n")
	fmt.Fprintf(&b, "* Setup, untimed: the plugin is launched through plugins/pluginhost with its own state directory, the image archive "+
		"`%s` (%s) is imported through its image service, %d sandboxes are created (each with its own network namespace, made by the plugin) "+
		"and one container is created, never started, whose bundle (OCI spec and overlay root filesystem) is the floor's.\n",
		shortPath(cfg.ImageArchive), cfg.Image, cfg.Sandboxes)
	b.WriteString("* \"Process runs\" is the container's own first act: its command is `sh -c 'echo TAG > /paddock-bench/TAG && exec sleep 3600'`, " +
		"and /paddock-bench is a bind mount (from an allowed mount root) of a directory the bench watches with inotify. A goroutine " +
		"blocked reading the inotify descriptor is woken when the file is created and takes the time; nothing polls. A file works in " +
		"every class: under gVisor the gofer creates it on the host for the sandbox (a host FIFO, which the bench used before, is " +
		"refused inside gVisor unless runsc runs with --host-fifo=open). A start runs from just before CreateSandbox (pod starts) or " +
		"CreateContainer (container starts) is sent, or runc or runsc is forked (floors), until that read and, where there is one, the " +
		"return of the start step (StartContainer, `runc start`), whichever comes later: the node agent cannot report a container " +
		"running before StartContainer has returned. `runc run` and `runsc run` stay in the foreground, so their starts end at the read.\n")
	b.WriteString("* Pod starts: each class's plugin has its own state directory and image store and imports the image first; the " +
		"containerd class runs against a private containerd daemon the bench starts (its own configuration with the CRI plugin off, " +
		"root, state directory and socket) and stops afterwards. A pod is removed with RemoveContainer (force), StopSandbox and " +
		"RemoveSandbox. The pod floors run the runc plugin's template bundle with a network namespace of their own (the spec's " +
		"network namespace without a path) and a cgroup of their own; `runsc run` gets the runsc plugin's options (--platform, " +
		"--network sandbox, --oci-seccomp) and starts one sandbox per container, its sandbox and gofer processes reaped by `runsc run`. " +
		"Classes and floors take turns start by start, as the container starts do. CPU time is not counted for the plugins' pod " +
		"starts: gVisor's sandboxes and containerd's shims are not the plugin's children.\n")
	b.WriteString("* The floor is `runc run --bundle DIR ID` in the foreground with the same runc, `--root` of its own and a JSON log like the " +
		"plugin's shim (and, alongside, `runc create --pid-file` + `runc start` with the container's process reaped by the bench, " +
		"a child subreaper while it runs): the plugin's OCI spec of the template container (same process, user, namespaces — joining the sandbox's network " +
		"namespace —, capabilities, seccomp profile, masked paths, mounts and root filesystem) with only the command's tag and the cgroup " +
		"changed; each floor container gets a cgroup of its own one level below runc's, as each plugin container gets one below its " +
		"existing pod cgroup. runc run stays the container's parent, as the plugin's shim does. The floor reuses the prepared root " +
		"filesystem, so the plugin's figure also holds what the floor does not: a new overlay mount and bundle per container, the records, " +
		"the shim and the gRPC round trips.\n")
	fmt.Fprintf(&b, "* Sequential: plugin and floors take turns, start by start (which goes first rotates), so that drift on the shared "+
		"machine hits them alike; each container is removed (plugin: RemoveContainer with force; floors: `runc kill ID KILL`, then "+
		"runc run deletes it, or `runc delete`) before the next start, outside the timed window. Concurrent: %d workers each start the next container as "+
		"soon as their last one runs, plugin workers each in their own sandbox (%d sandboxes), until %d have run; starts/s is that count "+
		"over the time from the first start to the last marker. The containers stay until then and are removed afterwards, untimed.\n",
		cfg.Concurrency, cfg.Sandboxes, cfg.Starts)
	b.WriteString("* CPU per start covers a container's whole life, start to removal. Plugin: the plugin process's user + system time and " +
		"that of the children it reaped (its shims, with the runc processes and containers they reaped), from /proc/PID/stat " +
		"(10 ms ticks) before and after the phase, once every shim has been reaped. Floors: the rusage of every runc process " +
		"(`runc run` with the container it reaped; `runc create`, `runc start`, `runc kill`, `runc delete`) and of the container's " +
		"process where the bench reaps it.\n")
	b.WriteString("* The bench holds the machine-wide test lock (internal/testlock) while it runs containers, so that no test's " +
		"containers run meanwhile.\n")

	b.WriteString("\n### Machine\n\n")
	fmt.Fprintf(&b, "* CPUs: %d (`nproc`; affinity %s), %s; memory %s\n", m.NProc, m.Affinity, m.CPUModel, m.MemTotal)
	fmt.Fprintf(&b, "* Kernel: %s; cgroup v2 the only hierarchy: %s\n", m.Kernel, m.Cgroup)
	fmt.Fprintf(&b, "* %s; plugin `%s` %s (API %s)\n", res.runcVersion, res.plugin.Name, res.plugin.Version, strings.Join(res.plugin.APIVersions, ", "))
	if res.runscVersion != "" {
		fmt.Fprintf(&b, "* %s (%s)\n", res.runscVersion, shortPath(cfg.Runsc))
	}
	if res.containerdVersion != "" {
		fmt.Fprintf(&b, "* %s\n", res.containerdVersion)
	}
	fmt.Fprintf(&b, "* Bench process GOMAXPROCS %d (the plugin runs with its own default); %s; source %s\n", m.GOMAXPROCS, m.GoVersion, m.Source)
	fmt.Fprintf(&b, "* Load average (1/5/15 min) before: %s; after: %s (the machine is shared: other builds may have run meanwhile)\n",
		m.LoadBefore, m.LoadAfter)
	return b.String()
}

// shortPath returns path relative to the working directory when it is
// below it.
func shortPath(path string) string {
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, path); err == nil && !strings.HasPrefix(rel, "..") {
			return rel
		}
	}
	return path
}
