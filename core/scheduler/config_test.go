package scheduler

import (
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/paddock-dev/paddock/core/errdefs"
)

func TestDecodeConfig(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		want      Config
		wantClass error  // nil: no error
		wantField string // the field the error names
		wantText  string // a piece of the message
	}{
		{name: "empty object", in: `{}`},
		{name: "null", in: `null`},
		{
			name: "all fields",
			in:   `{"scoreWeights": {"LeastAllocated": 0, "ReplicaSpread": 5}, "percentageOfNodesToScore": 20, "minFeasibleNodesToFind": 50}`,
			want: Config{ScoreWeights: map[string]int64{"LeastAllocated": 0, "ReplicaSpread": 5}, PercentageOfNodesToScore: 20, MinFeasibleNodesToFind: 50},
		},
		{
			name: "unknown plugin", in: `{"scoreWeights": {"LeastAllocated": 1, "MostAllocated": 1}}`,
			wantClass: errdefs.ErrInvalidArgument, wantField: "scoreWeights.MostAllocated", wantText: `unknown score plugin "MostAllocated": want one of LeastAllocated, BalancedAllocation, ReplicaSpread, TaintToleration`,
		},
		{
			name: "filter is not a score", in: `{"scoreWeights": {"NodeReady": 1}}`,
			wantClass: errdefs.ErrInvalidArgument, wantField: "scoreWeights.NodeReady", wantText: "unknown score plugin",
		},
		{
			name: "negative weight", in: `{"scoreWeights": {"TaintToleration": -1}}`,
			wantClass: errdefs.ErrInvalidArgument, wantField: "scoreWeights.TaintToleration", wantText: "weight -1 out of range",
		},
		{
			name: "weight too large", in: `{"scoreWeights": {"TaintToleration": 101}}`,
			wantClass: errdefs.ErrInvalidArgument, wantField: "scoreWeights.TaintToleration", wantText: "want 0 (off) to 100",
		},
		{
			name: "percentage too large", in: `{"percentageOfNodesToScore": 101}`,
			wantClass: errdefs.ErrInvalidArgument, wantField: "percentageOfNodesToScore",
		},
		{
			name: "negative percentage", in: `{"percentageOfNodesToScore": -5}`,
			wantClass: errdefs.ErrInvalidArgument, wantField: "percentageOfNodesToScore",
		},
		{
			name: "negative minimum", in: `{"minFeasibleNodesToFind": -1}`,
			wantClass: errdefs.ErrInvalidArgument, wantField: "minFeasibleNodesToFind",
		},
		{
			name: "unknown field", in: `{"percentageOfNodesToScore": 10, "percentOfNodes": 3}`,
			wantClass: errdefs.ErrBadRequest, wantField: "percentOfNodes", wantText: "unknown field",
		},
		{
			name: "wrong type", in: `{"scoreWeights": {"LeastAllocated": "high"}}`,
			wantClass: errdefs.ErrBadRequest, wantField: "scoreWeights.LeastAllocated", wantText: "want int64",
		},
		{
			name: "fraction", in: `{"percentageOfNodesToScore": 2.5}`,
			wantClass: errdefs.ErrBadRequest, wantField: "percentageOfNodesToScore",
		},
		{
			name: "not an object", in: `[1]`,
			wantClass: errdefs.ErrBadRequest, wantText: "want a JSON object",
		},
		{name: "trailing data", in: `{} {}`, wantClass: errdefs.ErrBadRequest, wantText: "data after"},
		{name: "malformed", in: `{"scoreWeights": `, wantClass: errdefs.ErrBadRequest, wantText: "malformed JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeConfig([]byte(tt.in))
			if tt.wantClass == nil {
				if err != nil {
					t.Fatalf("DecodeConfig(%s) error: %v", tt.in, err)
				}
				if !maps.Equal(got.ScoreWeights, tt.want.ScoreWeights) || got.PercentageOfNodesToScore != tt.want.PercentageOfNodesToScore ||
					got.MinFeasibleNodesToFind != tt.want.MinFeasibleNodesToFind {
					t.Fatalf("DecodeConfig(%s) = %+v, want %+v", tt.in, got, tt.want)
				}
				return
			}
			if !errors.Is(err, tt.wantClass) {
				t.Fatalf("DecodeConfig(%s) = %v, want class %v", tt.in, err, tt.wantClass)
			}
			if f := errdefs.FieldOf(err); f != tt.wantField {
				t.Errorf("DecodeConfig(%s) error names field %q, want %q (error: %v)", tt.in, f, tt.wantField, err)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("DecodeConfig(%s) error %q, want it to contain %q", tt.in, err, tt.wantText)
			}
		})
	}
}

func TestNewRejectsConfigNotFittingProfile(t *testing.T) {
	p := Profile{Filters: []FilterPlugin{NodeReady{}}, Scores: []WeightedScore{{LeastAllocated{}, 1}}}
	_, err := New(NewCache(), p, Config{ScoreWeights: map[string]int64{"ReplicaSpread": 1}})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || errdefs.FieldOf(err) != "scoreWeights.ReplicaSpread" {
		t.Fatalf("New with a weight for a plugin the profile lacks = %v, want invalid scoreWeights.ReplicaSpread", err)
	}
	if !strings.Contains(err.Error(), "want one of LeastAllocated") {
		t.Errorf("error %q does not list the profile's plugins", err)
	}
}

func TestFeasibleNodesToFind(t *testing.T) {
	tests := []struct {
		cfg   Config
		nodes int
		want  int
	}{
		{Config{}, 0, 0},
		{Config{}, 50, 50},
		{Config{}, 100, 100},
		{Config{}, 101, 100},    // 50% of 101 is 50, under the minimum
		{Config{}, 300, 144},    // 48%
		{Config{}, 5000, 500},   // 10%
		{Config{}, 6000, 300},   // 50 - 48 = 2%, raised to 5%
		{Config{}, 50000, 2500}, // 5%
		{Config{PercentageOfNodesToScore: 100}, 5000, 5000},
		{Config{PercentageOfNodesToScore: 1}, 5000, 100},
		{Config{PercentageOfNodesToScore: 30}, 5000, 1500},
		{Config{PercentageOfNodesToScore: 10, MinFeasibleNodesToFind: 5}, 60, 6},
		{Config{PercentageOfNodesToScore: 1, MinFeasibleNodesToFind: 5}, 60, 5},
		{Config{MinFeasibleNodesToFind: 1000}, 5000, 1000},
	}
	for _, tt := range tests {
		if got := tt.cfg.feasibleNodesToFind(tt.nodes); got != tt.want {
			t.Errorf("%+v.feasibleNodesToFind(%d) = %d, want %d", tt.cfg, tt.nodes, got, tt.want)
		}
	}
}

// FuzzDecodeConfig checks that DecodeConfig never panics, that it fails
// only with a bad-request or invalid-argument error naming a field or
// saying what is wrong, and that a config it accepts is valid, builds a
// Scheduler and survives a round trip through JSON.
func FuzzDecodeConfig(f *testing.F) {
	f.Add([]byte(`{"scoreWeights": {"LeastAllocated": 2}}`))
	f.Add([]byte(`{"percentageOfNodesToScore": 0, "minFeasibleNodesToFind": 0}`))
	f.Add([]byte(`{"scoreWeights": {"Nope": 1}}`))
	f.Add([]byte(`{"scoreWeights": null}`))
	f.Add([]byte(`{"percentageOfNodesToScore": 1e3}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := DecodeConfig(data)
		if err != nil {
			if !errors.Is(err, errdefs.ErrBadRequest) && !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("DecodeConfig(%q) error %v is of no expected class", data, err)
			}
			if err.Error() == "" {
				t.Fatalf("DecodeConfig(%q) gave an empty error", data)
			}
			return
		}
		if err := cfg.Validate(DefaultProfile()); err != nil {
			t.Fatalf("DecodeConfig(%q) accepted a config Validate refuses: %v", data, err)
		}
		if _, err := New(NewCache(), DefaultProfile(), cfg); err != nil {
			t.Fatalf("New refused the config DecodeConfig(%q) accepted: %v", data, err)
		}
		b, err := json.Marshal(cfg)
		if err != nil {
			t.Fatalf("json.Marshal(%+v): %v", cfg, err)
		}
		again, err := DecodeConfig(b)
		if err != nil {
			t.Fatalf("DecodeConfig(%s), the encoding of an accepted config: %v", b, err)
		}
		if !maps.Equal(again.ScoreWeights, cfg.ScoreWeights) || again.PercentageOfNodesToScore != cfg.PercentageOfNodesToScore ||
			again.MinFeasibleNodesToFind != cfg.MinFeasibleNodesToFind {
			t.Fatalf("round trip changed %+v to %+v", cfg, again)
		}
		if n := cfg.feasibleNodesToFind(5000); n < 1 || n > 5000 {
			t.Fatalf("%+v.feasibleNodesToFind(5000) = %d", cfg, n)
		}
	})
}
