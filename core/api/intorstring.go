package api

import (
	"encoding/json"
	"strconv"
	"strings"
)

// IntOrString holds either a whole number or a string such as "25%", as
// Kubernetes' maxSurge and maxUnavailable do.
type IntOrString struct {
	IsString bool
	Int      int32
	Str      string
}

// FromInt returns an IntOrString holding n.
func FromInt(n int32) *IntOrString { return &IntOrString{Int: n} }

// FromString returns an IntOrString holding s.
func FromString(s string) *IntOrString { return &IntOrString{IsString: true, Str: s} }

// MarshalJSON implements json.Marshaler.
func (v IntOrString) MarshalJSON() ([]byte, error) {
	if v.IsString {
		return json.Marshal(v.Str)
	}
	return json.Marshal(v.Int)
}

// UnmarshalJSON implements json.Unmarshaler.
func (v *IntOrString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fieldError("", "want a whole number or a percentage such as \"25%\"")
		}
		*v = IntOrString{IsString: true, Str: s}
		return nil
	}
	n, err := strconv.ParseInt(string(b), 10, 32)
	if err != nil {
		return fieldError("", "want a whole number or a percentage such as \"25%\"")
	}
	*v = IntOrString{Int: int32(n)}
	return nil
}

// String returns the value as written.
func (v IntOrString) String() string {
	if v.IsString {
		return v.Str
	}
	return strconv.Itoa(int(v.Int))
}

// Scaled resolves the value against total: a number as it is, a
// percentage of total rounded up when roundUp is set and down otherwise.
// It reports false for a string that is not a percentage.
func (v IntOrString) Scaled(total int32, roundUp bool) (int32, bool) {
	if !v.IsString {
		return v.Int, v.Int >= 0
	}
	p, ok := strings.CutSuffix(v.Str, "%")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 100 {
		return 0, false
	}
	x := int64(n) * int64(total)
	if roundUp {
		return int32((x + 99) / 100), true
	}
	return int32(x / 100), true
}
