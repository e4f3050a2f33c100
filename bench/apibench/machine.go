package apibench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	benchmachine "github.com/paddock-dev/paddock/bench/internal/machine"
)

// machine describes where a run happened, in the terms of the ground
// rules of docs/benchmarks.md: what every benchmark reports, plus the
// disk under etcd.
type machine struct {
	benchmachine.Info
	Disk       string // df's line for the data directory
	Rotational string // the block device's rotational flag
	Etcd       string
	Fsync      fsyncResult
}

// fsyncResult is what the fdatasync probe measured.
type fsyncResult struct {
	N             int
	BlockSize     int
	P50, P99, Max time.Duration
}

// fsyncBlockSize is the size of the probe's writes: fio's
// --bs=2300, about the size of an etcd WAL entry of a small write.
const fsyncBlockSize = 2300

// describeMachine gathers the machine's description; dir is the directory
// the data lives in.
func describeMachine(ctx context.Context, dir string) machine {
	m := machine{Info: benchmachine.Describe(ctx), Etcd: benchmachine.ModuleVersion("go.etcd.io/etcd/server/v3")}
	m.Disk, m.Rotational = diskOf(ctx, dir)
	return m
}

// loadAvg returns the load averages.
var loadAvg = benchmachine.LoadAvg

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

// diskOf returns df's description of the file system holding dir and
// whether the block device under it is rotational.
func diskOf(ctx context.Context, dir string) (desc, rotational string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "df", "-PT", dir).Output()
	if err != nil {
		return "unknown (df: " + err.Error() + ")", "rotational flag unknown"
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 2 {
		return "unknown", "rotational flag unknown"
	}
	f := strings.Fields(lines[len(lines)-1])
	if len(f) < 7 {
		return strings.Join(f, " "), "rotational flag unknown"
	}
	size := f[2]
	if kb, err := strconv.ParseInt(f[2], 10, 64); err == nil {
		size = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
	}
	desc = fmt.Sprintf("%s (%s, %s, %s used, mounted on %s)", f[0], f[1], size, f[5], f[6])
	return desc, rotationalOf(f[0])
}

// rotationalOf reads the rotational flag of the disk behind a device such
// as /dev/vda1 or /dev/nvme0n1p2.
func rotationalOf(dev string) string {
	name, ok := strings.CutPrefix(dev, "/dev/")
	if !ok {
		return "rotational flag unknown"
	}
	sys, err := filepath.EvalSymlinks(filepath.Join("/sys/class/block", name))
	if err != nil {
		return "rotational flag unknown"
	}
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		sys = filepath.Dir(sys)
	}
	switch v := strings.TrimSpace(readFile(filepath.Join(sys, "queue", "rotational"))); v {
	case "0", "1":
		// Virtual disks often say 1 whatever the medium underneath.
		return filepath.Base(sys) + " queue/rotational=" + v
	}
	return "rotational flag unknown"
}

// probeFsync writes n blocks of fsyncBlockSize bytes to a new file in dir,
// each followed by fdatasync, and returns the fdatasync latencies, as
// `fio --rw=write --ioengine=sync --fdatasync=1 --bs=2300` does. The file
// is removed.
func probeFsync(ctx context.Context, dir string, n int) (fsyncResult, error) {
	res := fsyncResult{N: n, BlockSize: fsyncBlockSize}
	if n <= 0 {
		return res, nil
	}
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return res, fmt.Errorf("fsync probe: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, fsyncBlockSize)
	for i := range block {
		block[i] = byte('a' + i%26)
	}
	lat := make([]time.Duration, 0, n)
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; i < n && ctx.Err() == nil && time.Now().Before(deadline); i++ {
		if _, err := f.Write(block); err != nil {
			return res, fmt.Errorf("fsync probe: %w", err)
		}
		t0 := time.Now()
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return res, fmt.Errorf("fsync probe: fdatasync: %w", err)
		}
		lat = append(lat, time.Since(t0))
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	s := summarize(lat)
	res.N, res.P50, res.P99, res.Max = s.N, s.P50, s.P99, s.Max
	return res, nil
}
