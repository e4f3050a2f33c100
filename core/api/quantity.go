package api

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/paddock-dev/paddock/core/errdefs"
)

// Quantity is an amount of a resource such as cpu (in cores) or memory (in
// bytes), written the way Kubernetes writes resource quantities: a
// non-negative decimal number with an optional suffix, such as "2", "0.5",
// "250m", "64Mi", "1G" or "1e3".
//
// A Quantity holds its value exactly, as a count of milli-units (a
// thousandth of a unit) in an int64, so the finest quantity is 1m and the
// largest is 9223372036854775807m (about 9.2P). A Quantity that was parsed
// remembers the text it was parsed from and prints it unchanged; one that
// was computed (NewQuantity, Add, Sub) prints in a canonical form.
//
// The zero Quantity is 0. Compare quantities with Cmp, not ==: "1" and
// "1000m" are equal quantities but different Go values.
type Quantity struct {
	milli int64  // the value in milli-units
	s     string // the text it was parsed from; "" if computed
}

// quantitySyntax says what a valid quantity looks like; every parse error
// ends with it or with a more specific complaint.
const quantitySyntax = "want a number with an optional suffix m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei (e.g. 250m, 64Mi, 2)"

// The reasons a well-formed quantity is out of range.
const (
	quantityNegative   = "must not be negative"
	quantityTooLarge   = "too large, the largest quantity is 9223372036854775807m (about 9.2P)"
	quantityTooPrecise = "too precise, the smallest unit is 1m (0.001)"
)

// quantityMaxExponent caps the exponent of a quantity such as "1e999" while
// it is parsed. Any non-zero quantity with an exponent this large overflows,
// and the cap keeps the arithmetic on exponents far from int overflow.
const quantityMaxExponent = 1_000_000_000_000_000

// binaryPrefixes holds the first letters of the binary suffixes, in order:
// the suffix binaryPrefixes[i]+"i" stands for 1024^(i+1).
const binaryPrefixes = "KMGTPE"

// quantitySuffix interprets the suffix of a quantity other than an exponent.
// It returns the suffix's power of ten (-3 for m, 3 for k) or of 1024 (1 for
// Ki), and false if the suffix is not one of them.
func quantitySuffix(suffix string) (exp10, exp1024 int, ok bool) {
	switch suffix {
	case "":
		return 0, 0, true
	case "m":
		return -3, 0, true
	case "k":
		return 3, 0, true
	case "M":
		return 6, 0, true
	case "G":
		return 9, 0, true
	case "T":
		return 12, 0, true
	case "P":
		return 15, 0, true
	case "E":
		return 18, 0, true
	}
	if len(suffix) == 2 && suffix[1] == 'i' {
		if i := strings.IndexByte(binaryPrefixes, suffix[0]); i >= 0 {
			return 0, i + 1, true
		}
	}
	return 0, 0, false
}

// ParseQuantity parses s as a quantity: an optional leading "+", decimal
// digits with an optional fraction ("2", "0.5"), and then either nothing, a
// decimal suffix (m for milli, k, M, G, T, P, E), a binary suffix (Ki, Mi,
// Gi, Ti, Pi, Ei) or a decimal exponent ("1e3", "1E3"; the exponent has no
// sign). It rejects negative quantities, values finer than 1m (0.001) and
// values too large for Quantity. The error is of class
// errdefs.ErrBadRequest and says what a valid quantity looks like.
func ParseQuantity(s string) (Quantity, error) {
	milli, reason := parseMilli(s)
	if reason != "" {
		return Quantity{}, errdefs.New(errdefs.ErrBadRequest, fmt.Sprintf("invalid quantity %q: %s", clipInput(s), reason))
	}
	return Quantity{milli: milli, s: s}, nil
}

// MustParseQuantity is like ParseQuantity but panics if s is not a valid
// quantity. It is meant for constants in code and tests.
func MustParseQuantity(s string) Quantity {
	q, err := ParseQuantity(s)
	if err != nil {
		panic("api.MustParseQuantity: " + err.Error())
	}
	return q
}

// NewMilliQuantity returns the quantity of milli milli-units (milli/1000
// units), printed in canonical form.
func NewMilliQuantity(milli int64) Quantity {
	return Quantity{milli: milli}
}

// NewQuantity returns the quantity of value whole units, printed in
// canonical form. A value too large to hold in milli-units saturates at the
// largest (or, if negative, the smallest) Quantity.
func NewQuantity(value int64) Quantity {
	switch {
	case value > math.MaxInt64/1000:
		return Quantity{milli: math.MaxInt64}
	case value < math.MinInt64/1000:
		return Quantity{milli: math.MinInt64}
	}
	return Quantity{milli: value * 1000}
}

// MilliValue returns the quantity in milli-units: 1000 for "1", 250 for
// "250m".
func (q Quantity) MilliValue() int64 { return q.milli }

// Value returns the quantity in whole units, rounded up: 1 for "250m", 2
// for "1500m", 67108864 for "64Mi".
func (q Quantity) Value() int64 {
	v := q.milli / 1000
	if q.milli%1000 > 0 {
		v++ // round up; for negatives, truncation already rounded up
	}
	return v
}

// IsZero reports whether the quantity is 0.
func (q Quantity) IsZero() bool { return q.milli == 0 }

// Cmp compares q with other and returns -1 if q is less, 0 if they are equal
// and +1 if q is more.
func (q Quantity) Cmp(other Quantity) int {
	switch {
	case q.milli < other.milli:
		return -1
	case q.milli > other.milli:
		return 1
	}
	return 0
}

// Add returns q + other in canonical form. Instead of overflowing, the sum
// saturates at the largest (or smallest) Quantity.
func (q Quantity) Add(other Quantity) Quantity {
	return Quantity{milli: saturatingAdd(q.milli, other.milli)}
}

// Sub returns q - other in canonical form. The difference may be negative
// (String prints it with a leading "-", although ParseQuantity does not
// accept negative quantities); instead of overflowing, it saturates at the
// largest (or smallest) Quantity.
func (q Quantity) Sub(other Quantity) Quantity {
	if other.milli == math.MinInt64 {
		// -MinInt64 does not fit in an int64: q - MinInt64 = q + MaxInt64 + 1.
		if q.milli >= 0 {
			return Quantity{milli: math.MaxInt64}
		}
		return Quantity{milli: q.milli + math.MaxInt64 + 1}
	}
	return Quantity{milli: saturatingAdd(q.milli, -other.milli)}
}

// saturatingAdd returns a + b, clamped to the range of int64.
func saturatingAdd(a, b int64) int64 {
	sum := a + b
	switch {
	case a > 0 && b > 0 && sum < 0:
		return math.MaxInt64
	case a < 0 && b < 0 && sum >= 0:
		return math.MinInt64
	}
	return sum
}

// String returns the text the quantity was parsed from or, for a computed
// quantity, its canonical form: "0"; the milli-units with suffix m when the
// value is not a whole number ("1500m"); the largest binary suffix that
// divides it exactly ("64Mi"); or else the plain whole number ("1000").
// Negative quantities, which only Sub and the constructors make, print with
// a leading "-". Apart from those, ParseQuantity parses String's result back
// to the same value.
func (q Quantity) String() string {
	if q.s != "" {
		return q.s
	}
	if q.milli == 0 {
		return "0"
	}
	if q.milli%1000 != 0 {
		return strconv.FormatInt(q.milli, 10) + "m"
	}
	v := q.milli / 1000
	for i := len(binaryPrefixes) - 1; i >= 0; i-- {
		if unit := int64(1) << (10 * (i + 1)); v%unit == 0 {
			return strconv.FormatInt(v/unit, 10) + binaryPrefixes[i:i+1] + "i"
		}
	}
	return strconv.FormatInt(v, 10)
}

// MarshalJSON encodes the quantity as a JSON string such as "250m"; the
// zero Quantity is "0".
func (q Quantity) MarshalJSON() ([]byte, error) {
	return strconv.AppendQuote(nil, q.String()), nil
}

// UnmarshalJSON decodes a quantity from a JSON string ("250m", "64Mi") or a
// JSON number (1, 0.5). JSON null leaves q unchanged.
func (q *Quantity) UnmarshalJSON(b []byte) error {
	switch {
	case string(b) == "null":
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return errdefs.New(errdefs.ErrBadRequest, "invalid quantity: malformed JSON string")
		}
		parsed, err := ParseQuantity(s)
		if err != nil {
			return err
		}
		*q = parsed
		return nil
	case len(b) > 0 && (b[0] == '-' || isASCIIDigit(b[0])):
		parsed, err := ParseQuantity(string(b))
		if err != nil {
			return err
		}
		*q = parsed
		return nil
	}
	return errdefs.New(errdefs.ErrBadRequest, fmt.Sprintf("invalid quantity %s: want a string or a number, %s", clipInput(string(b)), quantitySyntax))
}

// parseMilli parses a quantity and returns its value in milli-units, or
// the reason it is not valid (one of the quantity* constants).
func parseMilli(s string) (milli int64, reason string) {
	rest := s
	if abs, ok := strings.CutPrefix(rest, "-"); ok {
		// Say "negative" only about an otherwise valid quantity.
		if !strings.HasPrefix(abs, "+") && !strings.HasPrefix(abs, "-") {
			if _, reason := parseMilli(abs); reason == "" {
				return 0, quantityNegative
			}
		}
		return 0, quantitySyntax
	}
	rest = strings.TrimPrefix(rest, "+")

	// The number: digits, then optionally "." and more digits.
	intPart, rest := leadingDigits(rest)
	if intPart == "" {
		return 0, quantitySyntax
	}
	var fracPart string
	if strings.HasPrefix(rest, ".") {
		fracPart, rest = leadingDigits(rest[1:])
		if fracPart == "" {
			return 0, quantitySyntax
		}
	}

	// The suffix: a decimal or binary suffix or an exponent.
	exp10, exp1024, ok := quantitySuffix(rest)
	if !ok {
		if rest[0] != 'e' && rest[0] != 'E' {
			return 0, quantitySyntax
		}
		digits, tail := leadingDigits(rest[1:])
		if digits == "" || tail != "" {
			return 0, quantitySyntax
		}
		exp10 = parseExponent(digits)
	}

	// The value is digits × 10^scale × 1024^exp1024 milli-units, where
	// digits has no leading or trailing zeros.
	digits := strings.TrimLeft(intPart+fracPart, "0")
	if digits == "" {
		return 0, ""
	}
	scale := exp10 + 3 - len(fracPart)
	trimmed := strings.TrimRight(digits, "0")
	scale += len(digits) - len(trimmed)
	digits = trimmed

	// Settle the extremes without big arithmetic. The value is at least
	// 10^(len(digits)-1+scale), so that exponent must stay below 19. A
	// negative scale divides by 10^-scale = 2^-scale × 5^-scale: digits ends
	// in a non-zero digit, so it can be a multiple of 5 only if it is odd,
	// and then the factor 2^-scale must come from 1024^exp1024.
	if len(digits)-1+scale >= 19 {
		return 0, quantityTooLarge
	}
	if scale < 0 && -scale > 10*exp1024 {
		return 0, quantityTooPrecise
	}

	// Now digits has fewer than 80 digits and |scale| is at most 60.
	v, _ := new(big.Int).SetString(digits, 10)
	v.Lsh(v, uint(10*exp1024))
	if scale >= 0 {
		v.Mul(v, pow10(scale))
	} else {
		var rem big.Int
		v.QuoRem(v, pow10(-scale), &rem)
		if rem.Sign() != 0 {
			return 0, quantityTooPrecise
		}
	}
	if !v.IsInt64() {
		return 0, quantityTooLarge
	}
	return v.Int64(), ""
}

// pow10 returns 10^n.
func pow10(n int) *big.Int {
	return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
}

// leadingDigits splits s after its leading ASCII digits.
func leadingDigits(s string) (digits, rest string) {
	i := 0
	for i < len(s) && isASCIIDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

// parseExponent returns the value of a string of decimal digits, capped at
// quantityMaxExponent.
func parseExponent(digits string) int {
	n := 0
	for i := 0; i < len(digits); i++ {
		n = n*10 + int(digits[i]-'0')
		if n >= quantityMaxExponent {
			return quantityMaxExponent
		}
	}
	return n
}

// clipInput shortens user input quoted in an error message, so that a huge
// input still makes a readable error.
func clipInput(s string) string {
	const limit = 256
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
