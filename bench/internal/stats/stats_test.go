package stats

import (
	"testing"
	"time"
)

func ms(v ...int) []time.Duration {
	d := make([]time.Duration, len(v))
	for i, n := range v {
		d[i] = time.Duration(n) * time.Millisecond
	}
	return d
}

func TestSummarize(t *testing.T) {
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i
	}
	for _, tc := range []struct {
		name                string
		in                  []time.Duration
		p50, p99, max, mean time.Duration
	}{
		{"none", nil, 0, 0, 0, 0},
		{"one", ms(7), 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond},
		{"hundred unsorted", ms(hundred...), 50 * time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond, 50500 * time.Microsecond},
		{"three", ms(3, 1, 2), 2 * time.Millisecond, 3 * time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Summarize(tc.in)
			if got.P50 != tc.p50 || got.P99 != tc.p99 || got.Max != tc.max || got.Mean != tc.mean || got.N != len(tc.in) {
				t.Errorf("Summarize(%v) = %+v, want p50 %v p99 %v max %v mean %v", tc.in, got, tc.p50, tc.p99, tc.max, tc.mean)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if got := MedianDuration(ms(4, 1, 3)); got != 3*time.Millisecond {
		t.Errorf("MedianDuration(4, 1, 3 ms) = %v, want 3ms", got)
	}
}
