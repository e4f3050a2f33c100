package scheduler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/paddock-dev/paddock/core/errdefs"
)

// Config tunes a Scheduler. The zero Config is the defaults.
type Config struct {
	// ScoreWeights sets score plugins' weights by name, 0 to MaxWeight. A
	// plugin not named keeps the profile's weight; weight 0 turns it off.
	ScoreWeights map[string]int64 `json:"scoreWeights,omitempty"`
	// PercentageOfNodesToScore is the share of the cluster's nodes, 1 to
	// 100, that a decision looks for among the feasible ones before it
	// stops filtering and scores them. 0 (the default) adapts it to the
	// cluster's size: 50% less 1% per 125 nodes, at least 5%.
	PercentageOfNodesToScore int32 `json:"percentageOfNodesToScore,omitempty"`
	// MinFeasibleNodesToFind is the fewest feasible nodes a decision looks
	// for, whatever the percentage; 0 means 100. Clusters with fewer nodes
	// are examined whole.
	MinFeasibleNodesToFind int32 `json:"minFeasibleNodesToFind,omitempty"`
}

// MaxWeight is the largest score weight.
const MaxWeight = 100

// Sampling defaults, as in Kubernetes.
const (
	defaultMinFeasibleNodesToFind = 100
	adaptiveBasePercentage        = 50
	adaptiveNodesPerPercent       = 125
	adaptiveMinPercentage         = 5
)

// DecodeConfig decodes a Config from JSON and validates it against the
// default profile. Unknown fields, values of the wrong type and trailing
// data are errors of class errdefs.ErrBadRequest; values out of range or
// an unknown plugin name are of class errdefs.ErrInvalidArgument. Each
// names the field.
func DecodeConfig(data []byte) (Config, error) {
	var cfg Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, configSyntaxError(data, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Config{}, errdefs.New(errdefs.ErrBadRequest, "scheduler config: data after the JSON object")
	}
	if err := cfg.Validate(DefaultProfile()); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func configSyntaxError(data []byte, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		switch field {
		case "":
			return errdefs.New(errdefs.ErrBadRequest, "scheduler config: want a JSON object, got JSON "+te.Value)
		case "scoreWeights":
			field += badWeight(data)
		}
		return errdefs.Field(errdefs.ErrBadRequest, field, fmt.Sprintf("want %s, got JSON %s", te.Type, te.Value))
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if f, ok := strings.CutPrefix(msg, "unknown field "); ok {
		return errdefs.Field(errdefs.ErrBadRequest, strings.Trim(f, `"`),
			"unknown field in scheduler config: want scoreWeights, percentageOfNodesToScore or minFeasibleNodesToFind")
	}
	return errdefs.New(errdefs.ErrBadRequest, "scheduler config: malformed JSON: "+msg)
}

// badWeight returns ".KEY" for the first key of data's scoreWeights (in
// sorted order) whose value is not a weight, or "" if it finds none; the
// JSON decoder names only the map.
func badWeight(data []byte) string {
	var raw struct {
		ScoreWeights map[string]json.RawMessage `json:"scoreWeights"`
	}
	if json.Unmarshal(data, &raw) != nil {
		return ""
	}
	for _, k := range slices.Sorted(maps.Keys(raw.ScoreWeights)) {
		var w int64
		if json.Unmarshal(raw.ScoreWeights[k], &w) != nil {
			return "." + k
		}
	}
	return ""
}

// Validate checks cfg against the plugins of p: every weight must name one
// of p's score plugins and lie in 0..MaxWeight, the percentage in 0..100
// and the minimum must not be negative. The error is of class
// errdefs.ErrInvalidArgument and names the field.
func (cfg Config) Validate(p Profile) error {
	names := make([]string, 0, len(p.Scores))
	for _, s := range p.Scores {
		names = append(names, s.Plugin.Name())
	}
	// Report the same field first every time.
	for _, k := range slices.Sorted(maps.Keys(cfg.ScoreWeights)) {
		field := "scoreWeights." + k
		if !slices.Contains(names, k) {
			return errdefs.Field(errdefs.ErrInvalidArgument, field,
				fmt.Sprintf("unknown score plugin %q: want one of %s", k, strings.Join(names, ", ")))
		}
		if w := cfg.ScoreWeights[k]; w < 0 || w > MaxWeight {
			return errdefs.Field(errdefs.ErrInvalidArgument, field,
				fmt.Sprintf("weight %d out of range: want 0 (off) to %d", w, MaxWeight))
		}
	}
	if pct := cfg.PercentageOfNodesToScore; pct < 0 || pct > 100 {
		return errdefs.Field(errdefs.ErrInvalidArgument, "percentageOfNodesToScore",
			fmt.Sprintf("%d out of range: want 1 to 100, or 0 to adapt to the cluster's size", pct))
	}
	if m := cfg.MinFeasibleNodesToFind; m < 0 {
		return errdefs.Field(errdefs.ErrInvalidArgument, "minFeasibleNodesToFind",
			fmt.Sprintf("%d is negative: want a count of nodes, or 0 for %d", m, defaultMinFeasibleNodesToFind))
	}
	return nil
}

// feasibleNodesToFind returns how many feasible nodes a decision looks for
// in a cluster of n nodes.
func (cfg Config) feasibleNodesToFind(n int) int {
	least := int(cfg.MinFeasibleNodesToFind)
	if least == 0 {
		least = defaultMinFeasibleNodesToFind
	}
	pct := int(cfg.PercentageOfNodesToScore)
	if n <= least || pct >= 100 {
		return n
	}
	if pct == 0 {
		pct = max(adaptiveBasePercentage-n/adaptiveNodesPerPercent, adaptiveMinPercentage)
	}
	return max(n*pct/100, least)
}
