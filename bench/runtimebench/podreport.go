package runtimebench

import (
	"fmt"
	"strings"
	"time"

	"github.com/paddock-dev/paddock/bench/internal/mdreport"
	"github.com/paddock-dev/paddock/bench/internal/stats"
)

// classTitles name the classes in the report.
var classTitles = map[string]string{
	ClassRunc:       "runc",
	ClassGvisor:     "gvisor (runsc, " + gvisorPlatform + ")",
	ClassContainerd: "containerd (runc handler)",
}

// floorOf returns the pod floor a class is measured against and its label.
func (res *results) floorOf(class string) (*phase, string) {
	if class == ClassGvisor {
		return res.runscFloor, "`runsc run`"
	}
	return res.podFloor, "`runc run`"
}

// pct formats a p50 / p99 pair.
func pct(l stats.Latencies) string { return mdreport.Ms(l.P50) + " / " + mdreport.Ms(l.P99) }

// podGoal returns the design notes' goal verdicts for a class's pod start.
func podGoal(class string, l stats.Latencies) string {
	if class == ClassGvisor {
		return fmt.Sprintf("B3 runsc-systrap: p50 ≤ %s ms: %s (stretch ≤ %s ms: %s)",
			mdreport.Ms(goalGvisorP50), verdict(l.P50 <= goalGvisorP50), mdreport.Ms(goalGvisorStretch), verdict(l.P50 <= goalGvisorStretch))
	}
	return fmt.Sprintf("B3 runc path, with networking: p50 ≤ %s ms: %s; p99 ≤ %s ms: %s",
		mdreport.Ms(goalP50), verdict(l.P50 <= goalP50), mdreport.Ms(goalP99), verdict(l.P99 <= goalP99))
}

// podMarkdown writes the pod starts' part of the report.
func (res *results) podMarkdown(b *strings.Builder) {
	cfg := res.cfg
	b.WriteString("### Pod start: the runc, gvisor and containerd classes side by side\n\n")
	fmt.Fprintf(b, "A pod start is CreateSandbox + CreateContainer + StartContainer through the class's runtime plugin (launched through "+
		"plugins/pluginhost as the node agent launches it) until the container's process runs, with the image present and a network "+
		"namespace the plugin makes (no network plugin); the pod is removed, untimed, before the next start. The floors, in the same run: "+
		"bare `runc run` and bare `runsc run` (a whole gVisor sandbox, %s platform) of the runc plugin's own bundle, each in a network "+
		"namespace of its own. %d sequential starts of each class and floor, in turn, after %d unmeasured ones.\n\n",
		gvisorPlatform, cfg.PodStarts, cfg.Warmup)

	t := mdreport.NewTable("Class", "Plugin", "Pod start p50 / p99 (ms)", "Floor", "Floor p50 / p99 (ms)", "Ratio to floor p50 / p99", "Goal")
	for _, c := range res.classes {
		if c.skipped != "" {
			t.Row(classTitles[c.name], "not measured: "+c.skipped, "", "", "", "", "")
			continue
		}
		l := res.pods[c.name].ready()
		floor, floorLabel := res.floorOf(c.name)
		fl := floor.ready()
		info := res.podPlugins[c.name]
		t.Row(classTitles[c.name], fmt.Sprintf("`%s` %s", info.Name, info.Version), pct(l), floorLabel, pct(fl),
			ratio(float64(l.P50), float64(fl.P50))+" / "+ratio(float64(l.P99), float64(fl.P99)), podGoal(c.name, l))
	}
	b.WriteString(t.String())
	if g, r := res.pods[ClassGvisor], res.pods[ClassRunc]; g != nil && r != nil {
		gl, rl := g.ready(), r.ready()
		fmt.Fprintf(b, "\ngvisor p50 / runc p50: %s / %s ms = **%s** (goal ≤ %.0f×: **%s**); at p99 %s. ",
			mdreport.Ms(gl.P50), mdreport.Ms(rl.P50), ratio(float64(gl.P50), float64(rl.P50)), goalGvisorRatio,
			verdict(float64(gl.P50) <= goalGvisorRatio*float64(rl.P50)), ratio(float64(gl.P99), float64(rl.P99)))
		if res.runscFloor != nil && res.podFloor != nil {
			fmt.Fprintf(b, "The floors' own: `runsc run` p50 / `runc run` p50 = %s.",
				ratio(float64(res.runscFloor.ready().P50), float64(res.podFloor.ready().P50)))
		}
		b.WriteString("\n")
	} else {
		b.WriteString("\ngvisor p50 / runc p50 (goal ≤ 2×): not measured, both classes are needed.\n")
	}

	if len(res.pods) > 0 {
		b.WriteString("\nWhere a pod start spends its time, p50 / p99 ms from the moment CreateSandbox is sent:\n\n")
		cols := []string{"Step"}
		var measured []*phase
		for _, c := range res.classes {
			if p := res.pods[c.name]; p != nil {
				cols, measured = append(cols, classTitles[c.name]), append(measured, p)
			}
		}
		b.WriteString(stepTable(cols, []step{
			{"CreateSandbox (pod cgroup, network namespace; gvisor: the sandbox with its pause process)", func(s sample) time.Duration { return s.Sandbox }},
			{"CreateContainer (root filesystem, OCI bundle, record)", func(s sample) time.Duration { return s.Create - s.Sandbox }},
			{"StartContainer (runc, runsc or containerd's shim starts the process)", func(s sample) time.Duration { return s.Start - s.Create }},
			{"process's marker read, after StartContainer returned (negative: before)", func(s sample) time.Duration { return s.Marker - s.Start }},
			{"the whole pod start", func(s sample) time.Duration { return s.Ready }},
		}, measured...))
	}
	fmt.Fprintf(b, "\nThe marker's own latency (the bench creates a marker file itself, until its reader has the inotify event), "+
		"%d times: p50 %s ms, p99 %s ms.\n", res.markLatency.N, mdreport.Ms(res.markLatency.P50), mdreport.Ms(res.markLatency.P99))
}

// podPhases returns the measured pod phases in report order.
func (res *results) podPhases() []*phase {
	var all []*phase
	if res.podFloor != nil {
		all = append(all, res.podFloor)
	}
	for _, c := range res.classes {
		if p := res.pods[c.name]; p != nil {
			all = append(all, p)
		}
	}
	if res.runscFloor != nil {
		all = append(all, res.runscFloor)
	}
	return all
}
