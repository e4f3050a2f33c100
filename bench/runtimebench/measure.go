package runtimebench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// phase is one workload's measured starts.
type phase struct {
	Workload    string // the starter's label
	Concurrency int
	Samples     []sample
	// Elapsed is from the phase's first start to its last marker.
	Elapsed time.Duration
	// CPU is the CPU time spent on the phase's containers from their
	// starts to their removal (see starter.cpu).
	CPU time.Duration
	// PluginCPU is the plugin process's own part of CPU (plugin only).
	PluginCPU time.Duration
}

// Rate is the phase's starts per second.
func (p *phase) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(len(p.Samples)) / p.Elapsed.Seconds()
}

// clockTick is the unit of /proc/PID/stat's times: USER_HZ, 100 on Linux.
const clockTick = 10 * time.Millisecond

// procCPU returns the CPU time (user + system) of process pid and its
// reaped children, and of the process alone.
func procCPU(pid int) (total, own time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("plugin CPU: %w", err)
	}
	// The fields after the command name (which may hold spaces) start
	// with the state, field 3; utime, stime, cutime and cstime are 14-17.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("plugin CPU: short /proc/%d/stat", pid)
	}
	var t [4]time.Duration
	for i := range t {
		v, err := strconv.ParseInt(f[11+i], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("plugin CPU: /proc/%d/stat: %w", pid, err)
		}
		t[i] = time.Duration(v) * clockTick
	}
	return t[0] + t[1] + t[2] + t[3], t[0] + t[1], nil
}

// reapWait is how long the plugin may take to reap its shims after the
// last removal; until it has, their CPU time is not in its counters.
const reapWait = 10 * time.Second

// awaitReaped waits until the plugin process has no child processes.
func awaitReaped(ctx context.Context, pid int) error {
	deadline := time.Now().Add(reapWait)
	for {
		n, err := childCount(pid)
		if err != nil || n == 0 {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the plugin (pid %d) still has %d child processes %v after the last container was removed", pid, n, reapWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// childCount counts the children of every thread of pid.
func childCount(pid int) (int, error) {
	files, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended
		}
		n += len(strings.Fields(string(b)))
	}
	return n, nil
}

// measureCPU runs fn and charges to each phase the CPU time its starter
// spent meanwhile. The plugin must not restart: its counters would start
// again.
func (e *env) measureCPU(ctx context.Context, phases map[starter]*phase, fn func() error) error {
	pid := e.inst.PID()
	before := map[starter][2]time.Duration{}
	for s := range phases {
		total, own, err := s.cpu(ctx)
		if err != nil {
			return err
		}
		before[s] = [2]time.Duration{total, own}
	}
	if err := fn(); err != nil {
		return err
	}
	if now := e.inst.PID(); now != pid {
		return fmt.Errorf("the plugin restarted during the phase (pid %d, now %d)", pid, now)
	}
	for s, p := range phases {
		total, own, err := s.cpu(ctx)
		if err != nil {
			return err
		}
		p.CPU, p.PluginCPU = total-before[s][0], own-before[s][1]
	}
	return nil
}

// sequential runs n rounds of one start of each starter, the order
// rotating from round to round, each container removed (untimed) before
// the next start. Tags are the starter's name, prefix and the round.
func (e *env) sequential(ctx context.Context, prefix string, n int, starters ...starter) ([]*phase, error) {
	phases := make([]*phase, len(starters))
	byStarter := map[starter]*phase{}
	for i, s := range starters {
		phases[i] = &phase{Workload: s.label(), Concurrency: 1}
		byStarter[s] = phases[i]
	}
	err := e.measureCPU(ctx, byStarter, func() error {
		for i := range n {
			for k := range starters {
				j := (i + k) % len(starters)
				s, p := starters[j], phases[j]
				tag := fmt.Sprintf("%s-%s%d", s.name(), prefix, i)
				smp, err := s.start(ctx, tag, 0)
				if err != nil {
					return err
				}
				p.Samples = append(p.Samples, smp)
				p.Elapsed += smp.Ready
				if err := s.remove(ctx, tag); err != nil {
					return err
				}
			}
			if (i+1)%25 == 0 {
				e.log.Info("sequential starts", "done", i+1, "of", n)
			}
		}
		return nil
	})
	return phases, err
}

// concurrent starts n containers with s from c workers at once, each
// taking the next start when its last one runs. Every container stays
// until the phase's last start has run; then all are removed (untimed).
func (e *env) concurrent(ctx context.Context, s starter, n, c int) (*phase, error) {
	p := &phase{Workload: s.label(), Concurrency: c, Samples: make([]sample, n)}
	err := e.measureCPU(ctx, map[starter]*phase{s: p}, func() error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var next atomic.Int64
		var mu sync.Mutex
		var errs []error
		tag := func(i int) string { return fmt.Sprintf("%s-c%d", s.name(), i) }
		// work runs do for every start from c workers; the first error
		// stops them all.
		work := func(do func(worker, i int) error) {
			next.Store(0)
			var wg sync.WaitGroup
			for w := range c {
				wg.Go(func() {
					for {
						i := int(next.Add(1) - 1)
						if i >= n || ctx.Err() != nil {
							return
						}
						if err := do(w, i); err != nil {
							mu.Lock()
							errs = append(errs, err)
							mu.Unlock()
							cancel()
							return
						}
					}
				})
			}
			wg.Wait()
		}
		t0 := time.Now()
		work(func(w, i int) error {
			smp, err := s.start(ctx, tag(i), w)
			p.Samples[i] = smp
			return err
		})
		for _, smp := range p.Samples {
			p.Elapsed = max(p.Elapsed, smp.At.Sub(t0))
		}
		startErr := errors.Join(errs...)
		if startErr != nil {
			return startErr
		}
		work(func(_, i int) error { return s.remove(ctx, tag(i)) })
		return errors.Join(errs...)
	})
	return p, err
}
