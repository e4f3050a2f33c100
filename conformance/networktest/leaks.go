package networktest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
)

// state is what the leak check compares before and after a case.
type state struct {
	hostSides []string // the host sides Attach answered that still exist
	allocated int64    // Status.ipam.allocated; -1 when unknown
	mounts    []string // mount points under the work directory
	err       error
}

// snapshot reads which of hostSides the host still has, the plugin's
// count of allocated addresses and the namespace mounts under the work
// directory. Only the host sides the plugin named count: other software
// on the machine may make veths of its own at any time.
func (e *env) snapshot(ctx context.Context, hostSides []string) *state {
	s := &state{allocated: -1}
	for _, name := range hostSides {
		exists, err := hostLinkExists(name)
		if err != nil {
			s.err = err
		}
		if exists {
			s.hostSides = append(s.hostSides, name)
		}
	}
	if c := e.cfg.Target.Client(); c != nil {
		if st, err := c.Status(ctx, &networkv1.StatusRequest{}); err == nil && st.Ipam != nil {
			s.allocated = int64(st.Ipam.Allocated)
		}
	}
	s.mounts = mountsUnder(e.cfg.WorkDir)
	return s
}

// mountsUnder returns the mount points below dir.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			out = append(out, fields[4])
		}
	}
	slices.Sort(out)
	return out
}

// leaks returns what after has that before did not.
func leaks(before, after *state) []string {
	var out []string
	if after.err != nil {
		out = append(out, "cannot read the host's interfaces: "+after.err.Error())
	}
	for _, v := range after.hostSides {
		out = append(out, "host interface "+v)
	}
	if before.allocated >= 0 && after.allocated > before.allocated {
		out = append(out, fmt.Sprintf("%d address(es) still allocated (Status.ipam.allocated %d, was %d)", after.allocated-before.allocated, after.allocated, before.allocated))
	}
	for _, m := range after.mounts {
		if !slices.Contains(before.mounts, m) {
			out = append(out, "network namespace mount "+m)
		}
	}
	return out
}

// waitNoLeaks gives asynchronous cleanup (the kernel destroying a
// namespace and its veths) a moment and returns what is still leaked
// after within.
func (e *env) waitNoLeaks(ctx context.Context, before *state, hostSides []string, within time.Duration) []string {
	deadline := time.Now().Add(within)
	for {
		l := leaks(before, e.snapshot(ctx, hostSides))
		if len(l) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return l
		}
		time.Sleep(100 * time.Millisecond)
	}
}
