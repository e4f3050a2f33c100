// Package stats holds the statistics the benchmark programs report:
// nearest-rank percentiles of latency samples and medians over
// repetitions. The functions are pure.
package stats

import (
	"slices"
	"time"
)

// Latencies summarises a set of latency samples.
type Latencies struct {
	N             int
	P50, P90, P99 time.Duration
	Max           time.Duration
	Mean          time.Duration
}

// Summarize sorts d in place and returns its percentiles (nearest rank),
// maximum and mean; the zero value for no samples.
func Summarize(d []time.Duration) Latencies {
	if len(d) == 0 {
		return Latencies{}
	}
	slices.Sort(d)
	var sum time.Duration
	for _, v := range d {
		sum += v
	}
	return Latencies{
		N:    len(d),
		P50:  Percentile(d, 50),
		P90:  Percentile(d, 90),
		P99:  Percentile(d, 99),
		Max:  d[len(d)-1],
		Mean: sum / time.Duration(len(d)),
	}
}

// Percentile returns the nearest-rank p-th percentile of sorted.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return sorted[rank]
}

// Median returns the median of v (the mean of the middle two for an even
// count), or 0 for none.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// MedianDuration is Median for durations.
func MedianDuration(v []time.Duration) time.Duration {
	f := make([]float64, len(v))
	for i, d := range v {
		f[i] = float64(d)
	}
	return time.Duration(Median(f))
}
