package apibench

import "github.com/paddock-dev/paddock/bench/internal/stats"

// The statistics shared with the other benchmarks.
type latencies = stats.Latencies

var (
	summarize      = stats.Summarize
	median         = stats.Median
	medianDuration = stats.MedianDuration
)
