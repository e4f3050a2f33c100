package schedbench

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protowire"
)

// The pprof label the run's own goroutines carry, and its values: the
// scheduler's (its informers, decisions and binds, client side) and the
// pod creators'. Everything else in the process is the control plane
// (the API server and etcd).
const (
	cpuLabel       = "paddock-bench"
	labelScheduler = "scheduler"
	labelCreators  = "creators"
)

// labelShares reads a CPU profile (runtime/pprof's gzipped profile.proto)
// and returns each value of label key's share of the sampled CPU time,
// "" for samples without the label. Only the fields it needs are decoded:
// Profile.sample_type (1), sample (2) and string_table (6); Sample.value
// (2) and label (3); Label.key (1) and str (2).
func labelShares(profile []byte, key string) (map[string]float64, error) {
	zr, err := gzip.NewReader(bytes.NewReader(profile))
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	var strs []string
	var types [][]byte // ValueType messages
	var samples [][]byte
	if err := eachField(raw, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case 1:
			types = append(types, v)
		case 2:
			samples = append(samples, v)
		case 6:
			strs = append(strs, string(v))
		}
		return nil
	}); err != nil {
		return nil, err
	}
	str := func(i uint64) string {
		if i < uint64(len(strs)) {
			return strs[i]
		}
		return ""
	}
	cpu := -1 // the index of the "cpu" value in each sample
	for i, t := range types {
		_ = eachField(t, func(num protowire.Number, typ protowire.Type, v []byte) error {
			if num == 1 && typ == protowire.VarintType {
				if n, _ := protowire.ConsumeVarint(v); str(n) == "cpu" {
					cpu = i
				}
			}
			return nil
		})
	}
	if cpu < 0 {
		return nil, errors.New("no cpu value in the profile")
	}
	byLabel := map[string]int64{}
	var total int64
	for _, s := range samples {
		var values []int64
		label := ""
		err := eachField(s, func(num protowire.Number, typ protowire.Type, v []byte) error {
			switch {
			case num == 2 && typ == protowire.BytesType: // packed values
				for len(v) > 0 {
					x, n := protowire.ConsumeVarint(v)
					if n < 0 {
						return protowire.ParseError(n)
					}
					values, v = append(values, int64(x)), v[n:]
				}
			case num == 2 && typ == protowire.VarintType:
				x, _ := protowire.ConsumeVarint(v)
				values = append(values, int64(x))
			case num == 3 && typ == protowire.BytesType:
				var k, val uint64
				_ = eachField(v, func(num protowire.Number, typ protowire.Type, v []byte) error {
					if typ == protowire.VarintType {
						x, _ := protowire.ConsumeVarint(v)
						switch num {
						case 1:
							k = x
						case 2:
							val = x
						}
					}
					return nil
				})
				if str(k) == key {
					label = str(val)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if cpu < len(values) {
			byLabel[label] += values[cpu]
			total += values[cpu]
		}
	}
	if total == 0 {
		return nil, errors.New("the profile has no CPU samples")
	}
	shares := map[string]float64{}
	for l, v := range byLabel {
		shares[l] = float64(v) / float64(total)
	}
	return shares, nil
}

// eachField calls f with every field of a protobuf message: its number,
// wire type and value (a varint's bytes, or a length-delimited field's
// contents).
func eachField(b []byte, f func(protowire.Number, protowire.Type, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("profile: %w", protowire.ParseError(n))
		}
		b = b[n:]
		var v []byte
		switch typ {
		case protowire.BytesType:
			val, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return fmt.Errorf("profile: %w", protowire.ParseError(m))
			}
			v, n = val, m
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("profile: %w", protowire.ParseError(n))
			}
			v = b[:n]
		}
		if err := f(num, typ, v); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
