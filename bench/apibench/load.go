package apibench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// opTimeout bounds a single operation of a load run.
const opTimeout = 30 * time.Second

// opFunc performs the seq-th operation of worker w.
type opFunc func(ctx context.Context, w, seq int) error

// runResult is one timed run of a workload.
type runResult struct {
	Ops     int
	Elapsed time.Duration
	Lat     latencies
	// CPU is the CPU time (user + system) the whole process used during
	// the run: server, etcd and load generator together.
	CPU time.Duration
	// Stall is the share of the run during which some task on the
	// machine waited for a CPU (Linux PSI, /proc/pressure/cpu "some"),
	// or -1 when the kernel does not tell: a sign of other load.
	Stall float64
}

// CPUPerOp returns the process's CPU time per operation.
func (r runResult) CPUPerOp() time.Duration {
	if r.Ops == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.Ops)
}

// Rate returns operations per second.
func (r runResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// runLoad runs op from clients workers, each issuing its next operation as
// soon as the previous one returns (a closed loop, like etcd's benchmark
// tool), until d has passed or maxOps operations have been started. The
// first failing operation stops the run and is returned.
func runLoad(parent context.Context, clients int, d time.Duration, maxOps int, op opFunc) (runResult, error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var (
		started atomic.Int64
		wg      sync.WaitGroup
		lat     = make([][]time.Duration, clients)
		errs    = make([]error, clients)
	)
	cpu0, stall0 := processCPU(), cpuStallTotal()
	start := time.Now()
	deadline := start.Add(d)
	for w := range clients {
		wg.Go(func() {
			for seq := 0; ; seq++ {
				if started.Add(1) > int64(maxOps) || ctx.Err() != nil || !time.Now().Before(deadline) {
					return
				}
				octx, ocancel := context.WithTimeout(ctx, opTimeout)
				t0 := time.Now()
				err := op(octx, w, seq)
				took := time.Since(t0)
				ocancel()
				if err != nil {
					errs[w] = fmt.Errorf("worker %d, operation %d: %w", w, seq, err)
					cancel()
					return
				}
				lat[w] = append(lat[w], took)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu, stall1 := processCPU()-cpu0, cpuStallTotal()
	if err := parent.Err(); err != nil {
		return runResult{}, err
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return runResult{}, err
		}
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	r := runResult{Ops: len(all), Elapsed: elapsed, Lat: summarize(all), CPU: cpu, Stall: -1}
	if stall0 >= 0 && stall1 >= stall0 {
		r.Stall = float64(stall1-stall0) / float64(elapsed)
	}
	return r, nil
}

// processCPU returns the CPU time the process has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuStallTotal returns the machine's total CPU "some" pressure stall
// time so far, or -1 when the kernel has no PSI.
func cpuStallTotal() time.Duration {
	for line := range strings.Lines(readFile("/proc/pressure/cpu")) {
		if !strings.HasPrefix(line, "some ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "total="); ok {
				if us, err := strconv.ParseInt(v, 10, 64); err == nil {
					return time.Duration(us) * time.Microsecond
				}
			}
		}
	}
	return -1
}
