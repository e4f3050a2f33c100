package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/paddock-dev/paddock/core/errdefs"
)

func TestParseQuantity(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int64 // milli-units
	}{
		{"zero", "0", 0},
		{"integer", "1", 1000},
		{"large integer", "128", 128000},
		{"leading plus", "+2", 2000},
		{"leading zeros", "007", 7000},
		{"half", "0.5", 500},
		{"two decimals", "2.25", 2250},
		{"three decimals", "0.001", 1},
		{"trailing fraction zeros", "1.500000000000", 1500},
		{"zero with many decimals", "0.0000000000", 0},
		{"milli", "250m", 250},
		{"milli zero", "0m", 0},
		{"milli over a unit", "1500m", 1500},
		{"fractional milli that is whole", "1.0m", 1},
		{"kilo", "1k", 1_000_000},
		{"fractional kilo", "1.5k", 1_500_000},
		{"mega", "2M", 2_000_000_000},
		{"giga", "1G", 1_000_000_000_000},
		{"tera", "1T", 1_000_000_000_000_000},
		{"peta", "9P", 9_000_000_000_000_000_000},
		{"small exa", "0.009E", 9_000_000_000_000_000_000},
		{"kibi", "1Ki", 1024_000},
		{"mebi", "64Mi", 64 << 20 * 1000},
		{"fractional mebi", "0.5Mi", 512 << 10 * 1000},
		{"gibi", "2Gi", 2 << 30 * 1000},
		{"tebi", "1Ti", 1 << 40 * 1000},
		{"pebi", "8Pi", 8 << 50 * 1000},
		{"small exbi", "0.0078125Ei", 9007199254740992000},
		{"kibi with milli precision", "0.001Ki", 1024},
		{"exponent", "1e3", 1_000_000},
		{"upper-case exponent", "1E3", 1_000_000},
		{"zero exponent", "5e0", 5000},
		{"exponent with leading zeros", "2e03", 2_000_000},
		{"fraction with exponent", "1.5e1", 15000},
		{"exponent restoring precision", "0.00001e2", 1},
		{"zero with huge exponent", "0e999999999999999999999", 0},
		{"largest", "9223372036854775807m", math.MaxInt64},
		{"largest as decimal", "9223372036854775.807", math.MaxInt64},
		{"largest as exponent", "9.223372036854775807e15", math.MaxInt64},
		{"many leading zeros", "0000000000000000000000000000001", 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := ParseQuantity(tt.in)
			if err != nil {
				t.Fatalf("ParseQuantity(%q) error: %v", tt.in, err)
			}
			if got := q.MilliValue(); got != tt.want {
				t.Errorf("ParseQuantity(%q).MilliValue() = %d, want %d", tt.in, got, tt.want)
			}
			if got := q.String(); got != tt.in {
				t.Errorf("ParseQuantity(%q).String() = %q, want the input", tt.in, got)
			}
		})
	}
}

func TestParseQuantityErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // the error's text after `invalid quantity "<in>": `
	}{
		{"empty", "", quantitySyntax},
		{"negative", "-1", "must not be negative"},
		{"negative milli", "-250m", "must not be negative"},
		{"negative zero", "-0", "must not be negative"},
		{"double minus", "--1", quantitySyntax},
		{"minus plus", "-+1", quantitySyntax},
		{"double plus", "++1", quantitySyntax},
		{"plus alone", "+", quantitySyntax},
		{"inner sign", "1+1", quantitySyntax},
		{"leading space", " 1", quantitySyntax},
		{"trailing space", "1 ", quantitySyntax},
		{"space before suffix", "64 Mi", quantitySyntax},
		{"unknown suffix MB", "64MB", quantitySyntax},
		{"lower-case binary", "1mi", quantitySyntax},
		{"lower-case kibi", "1ki", quantitySyntax},
		{"upper-case kilo", "1K", quantitySyntax},
		{"bytes", "1b", quantitySyntax},
		{"suffix alone", "Mi", quantitySyntax},
		{"two suffixes", "1kM", quantitySyntax},
		{"dot alone", ".", quantitySyntax},
		{"no integer part", ".5", quantitySyntax},
		{"no fraction digits", "1.", quantitySyntax},
		{"two dots", "1.2.3", quantitySyntax},
		{"comma", "1,5", quantitySyntax},
		{"hex", "0x10", quantitySyntax},
		{"exponent without digits", "1e", quantitySyntax},
		{"signed exponent", "1e-3", quantitySyntax},
		{"plus exponent", "1e+3", quantitySyntax},
		{"exponent and suffix", "1e3m", quantitySyntax},
		{"fractional exponent", "1e1.5", quantitySyntax},
		{"infinity", "Inf", quantitySyntax},
		{"nan", "NaN", quantitySyntax},
		{"unicode digit", "١", quantitySyntax},
		{"finer than milli", "0.0001", "too precise, the smallest unit is 1m (0.001)"},
		{"fractional milli", "1.5m", "too precise, the smallest unit is 1m (0.001)"},
		{"fine kibi", "0.0001Ki", "too precise, the smallest unit is 1m (0.001)"},
		{"long fraction", "0." + strings.Repeat("0", 500) + "1", "too precise, the smallest unit is 1m (0.001)"},
		{"long odd fraction", "0." + strings.Repeat("3", 100) + "Ei", "too precise, the smallest unit is 1m (0.001)"},
		{"one over largest", "9223372036854775808m", quantityTooLarge},
		{"ten peta", "10P", quantityTooLarge},
		{"exa", "1E", quantityTooLarge},
		{"exbi", "8Ei", quantityTooLarge},
		{"huge exponent", "1e999999999999999999999", quantityTooLarge},
		{"large exponent", "1e16", quantityTooLarge},
		{"many digits", strings.Repeat("9", 100), quantityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := ParseQuantity(tt.in)
			if err == nil {
				t.Fatalf("ParseQuantity(%q) = %v, want an error", tt.in, q)
			}
			want := fmt.Sprintf("invalid quantity %q: %s", clipInput(tt.in), tt.want)
			if got := err.Error(); got != want {
				t.Errorf("ParseQuantity(%q) error = %q, want %q", tt.in, got, want)
			}
			if !errors.Is(err, errdefs.ErrBadRequest) {
				t.Errorf("ParseQuantity(%q) error %v is not of class ErrBadRequest", tt.in, err)
			}
		})
	}
}

func TestParseQuantityErrorExample(t *testing.T) {
	_, err := ParseQuantity("64MB")
	want := `invalid quantity "64MB": want a number with an optional suffix m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei (e.g. 250m, 64Mi, 2)`
	if err == nil || err.Error() != want {
		t.Errorf("ParseQuantity(%q) error = %v, want %q", "64MB", err, want)
	}
}

func TestParseQuantityClipsLongInput(t *testing.T) {
	in := strings.Repeat("x", 10000)
	_, err := ParseQuantity(in)
	if err == nil {
		t.Fatalf("ParseQuantity(10000 x's) = nil error, want an error")
	}
	if n := len(err.Error()); n > 600 {
		t.Errorf("ParseQuantity(10000 x's) error is %d bytes long, want it clipped", n)
	}
}

func TestMustParseQuantity(t *testing.T) {
	if got := MustParseQuantity("64Mi").Value(); got != 64<<20 {
		t.Errorf("MustParseQuantity(%q).Value() = %d, want %d", "64Mi", got, 64<<20)
	}
	defer func() {
		if recover() == nil {
			t.Errorf("MustParseQuantity(%q) did not panic", "64MB")
		}
	}()
	MustParseQuantity("64MB")
}

func TestQuantityValue(t *testing.T) {
	tests := []struct {
		name string
		q    Quantity
		want int64
	}{
		{"zero", Quantity{}, 0},
		{"one milli rounds up", NewMilliQuantity(1), 1},
		{"whole", NewMilliQuantity(2000), 2},
		{"just over whole", NewMilliQuantity(2001), 3},
		{"just under whole", NewMilliQuantity(1999), 2},
		{"mebi", MustParseQuantity("64Mi"), 64 << 20},
		{"largest", NewMilliQuantity(math.MaxInt64), math.MaxInt64/1000 + 1},
		{"negative rounds up", NewMilliQuantity(-1500), -1},
		{"negative whole", NewMilliQuantity(-2000), -2},
		{"smallest", NewMilliQuantity(math.MinInt64), math.MinInt64 / 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.q.Value(); got != tt.want {
				t.Errorf("%v.Value() = %d, want %d", tt.q, got, tt.want)
			}
		})
	}
}

func TestQuantityString(t *testing.T) {
	tests := []struct {
		name string
		q    Quantity
		want string
	}{
		{"zero value", Quantity{}, "0"},
		{"zero milli", NewMilliQuantity(0), "0"},
		{"milli", NewMilliQuantity(250), "250m"},
		{"milli over a unit", NewMilliQuantity(1500), "1500m"},
		{"whole", NewQuantity(3), "3"},
		{"thousand stays plain", NewQuantity(1000), "1000"},
		{"kibi", NewQuantity(1024), "1Ki"},
		{"multiple of kibi", NewQuantity(3072), "3Ki"},
		{"mebi", NewQuantity(64 << 20), "64Mi"},
		{"mebi not gibi", NewQuantity(1536 << 20), "1536Mi"},
		{"gibi", NewQuantity(2 << 30), "2Gi"},
		{"tebi", NewQuantity(1 << 40), "1Ti"},
		{"pebi", NewQuantity(8 << 50), "8Pi"},
		{"not binary", NewQuantity(1000000), "1000000"},
		{"parsed keeps its text", MustParseQuantity("1.0"), "1.0"},
		{"parsed keeps plus", MustParseQuantity("+1k"), "+1k"},
		{"largest", NewMilliQuantity(math.MaxInt64), "9223372036854775807m"},
		{"negative milli", NewMilliQuantity(-250), "-250m"},
		{"negative whole", NewQuantity(-3), "-3"},
		{"negative kibi", NewQuantity(-2048), "-2Ki"},
		{"smallest", NewMilliQuantity(math.MinInt64), "-9223372036854775808m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.q.String(); got != tt.want {
				t.Errorf("%#v.String() = %q, want %q", tt.q, got, tt.want)
			}
			if tt.q.MilliValue() < 0 {
				return // ParseQuantity does not accept negative quantities
			}
			back, err := ParseQuantity(tt.q.String())
			if err != nil {
				t.Fatalf("ParseQuantity(%q) error: %v", tt.q.String(), err)
			}
			if back.Cmp(tt.q) != 0 {
				t.Errorf("ParseQuantity(%q) = %dm, want %dm", tt.q.String(), back.MilliValue(), tt.q.MilliValue())
			}
		})
	}
}

func TestNewQuantity(t *testing.T) {
	tests := []struct {
		name string
		in   int64
		want int64
	}{
		{"zero", 0, 0},
		{"one", 1, 1000},
		{"negative", -1, -1000},
		{"largest exact", math.MaxInt64 / 1000, math.MaxInt64 / 1000 * 1000},
		{"saturates", math.MaxInt64/1000 + 1, math.MaxInt64},
		{"saturates at max", math.MaxInt64, math.MaxInt64},
		{"saturates negative", math.MinInt64, math.MinInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NewQuantity(tt.in).MilliValue(); got != tt.want {
				t.Errorf("NewQuantity(%d).MilliValue() = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestQuantityArithmetic(t *testing.T) {
	const maxQ, minQ = math.MaxInt64, math.MinInt64
	tests := []struct {
		name     string
		a, b     int64 // milli-units
		add, sub int64
	}{
		{"zeros", 0, 0, 0, 0},
		{"simple", 1500, 250, 1750, 1250},
		{"negative difference", 250, 1500, 1750, -1250},
		{"add saturates", maxQ, 1, maxQ, maxQ - 1},
		{"add saturates both large", maxQ - 5, maxQ - 5, maxQ, 0},
		{"sub of negative saturates", maxQ, -1, maxQ - 1, maxQ},
		{"sub saturates low", minQ, 1, minQ + 1, minQ},
		{"add saturates low", minQ, -1, minQ, minQ + 1},
		{"sub smallest from zero", 0, minQ, minQ, maxQ},
		{"sub smallest from negative", -1, minQ, minQ, maxQ},
		{"sub smallest from smallest", minQ, minQ, minQ, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := NewMilliQuantity(tt.a), NewMilliQuantity(tt.b)
			if got := a.Add(b).MilliValue(); got != tt.add {
				t.Errorf("%dm.Add(%dm) = %dm, want %dm", tt.a, tt.b, got, tt.add)
			}
			if got := a.Sub(b).MilliValue(); got != tt.sub {
				t.Errorf("%dm.Sub(%dm) = %dm, want %dm", tt.a, tt.b, got, tt.sub)
			}
		})
	}
}

func TestQuantityAddPrintsCanonically(t *testing.T) {
	sum := MustParseQuantity("0.5").Add(MustParseQuantity("500m"))
	if got, want := sum.String(), "1"; got != want {
		t.Errorf("0.5 + 500m = %q, want %q", got, want)
	}
	diff := MustParseQuantity("250m").Sub(MustParseQuantity("1"))
	if got, want := diff.String(), "-750m"; got != want {
		t.Errorf("250m - 1 = %q, want %q", got, want)
	}
}

func TestQuantityCmpAndIsZero(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		want int
	}{
		{"equal forms", "1", "1000m", 0},
		{"binary and decimal", "1Ki", "1024", 0},
		{"less", "250m", "0.5", -1},
		{"more", "1Gi", "1G", 1},
		{"zero forms", "0", "0Mi", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := MustParseQuantity(tt.a), MustParseQuantity(tt.b)
			if got := a.Cmp(b); got != tt.want {
				t.Errorf("%s.Cmp(%s) = %d, want %d", tt.a, tt.b, got, tt.want)
			}
			if got := b.Cmp(a); got != -tt.want {
				t.Errorf("%s.Cmp(%s) = %d, want %d", tt.b, tt.a, got, -tt.want)
			}
		})
	}
	for _, s := range []string{"0", "0m", "0.000", "0Ki", "0e5"} {
		if !MustParseQuantity(s).IsZero() {
			t.Errorf("MustParseQuantity(%q).IsZero() = false, want true", s)
		}
	}
	if (Quantity{}).IsZero() != true || NewMilliQuantity(1).IsZero() {
		t.Errorf("IsZero of the zero Quantity and of 1m = %v, %v, want true, false", Quantity{}.IsZero(), NewMilliQuantity(1).IsZero())
	}
}

func TestQuantityMarshalJSON(t *testing.T) {
	tests := []struct {
		name string
		q    Quantity
		want string
	}{
		{"zero value", Quantity{}, `"0"`},
		{"milli", NewMilliQuantity(250), `"250m"`},
		{"parsed", MustParseQuantity("64Mi"), `"64Mi"`},
		{"parsed number", MustParseQuantity("0.5"), `"0.5"`},
		{"negative", NewMilliQuantity(-1), `"-1m"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(tt.q)
			if err != nil {
				t.Fatalf("json.Marshal(%v) error: %v", tt.q, err)
			}
			if string(got) != tt.want {
				t.Errorf("json.Marshal(%v) = %s, want %s", tt.q, got, tt.want)
			}
		})
	}
}

func TestQuantityUnmarshalJSON(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int64  // milli-units
		wantStr string // String() after decoding
	}{
		{"string", `"250m"`, 250, "250m"},
		{"binary string", `"64Mi"`, 64 << 20 * 1000, "64Mi"},
		{"escaped string", `"\u0032"`, 2000, "2"},
		{"integer", `1`, 1000, "1"},
		{"decimal", `0.5`, 500, "0.5"},
		{"exponent number", `1e3`, 1_000_000, "1e3"},
		{"upper-case exponent number", `2E3`, 2_000_000, "2E3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q Quantity
			if err := json.Unmarshal([]byte(tt.in), &q); err != nil {
				t.Fatalf("json.Unmarshal(%s) error: %v", tt.in, err)
			}
			if q.MilliValue() != tt.want || q.String() != tt.wantStr {
				t.Errorf("json.Unmarshal(%s) = %q (%dm), want %q (%dm)", tt.in, q.String(), q.MilliValue(), tt.wantStr, tt.want)
			}
		})
	}
}

func TestQuantityUnmarshalJSONNull(t *testing.T) {
	q := MustParseQuantity("1")
	if err := json.Unmarshal([]byte(`null`), &q); err != nil {
		t.Fatalf("json.Unmarshal(null) error: %v", err)
	}
	if q.String() != "1" {
		t.Errorf("json.Unmarshal(null) changed the quantity to %q, want it left at %q", q.String(), "1")
	}
}

func TestQuantityUnmarshalJSONErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"bad suffix", `"64MB"`, `invalid quantity "64MB": want a number with an optional suffix m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei (e.g. 250m, 64Mi, 2)`},
		{"negative number", `-1`, `invalid quantity "-1": must not be negative`},
		{"negative string", `"-1"`, `invalid quantity "-1": must not be negative`},
		{"too precise number", `0.0001`, `invalid quantity "0.0001": too precise, the smallest unit is 1m (0.001)`},
		{"signed exponent number", `1e+3`, `invalid quantity "1e+3": ` + quantitySyntax},
		{"empty string", `""`, `invalid quantity "": ` + quantitySyntax},
		{"boolean", `true`, `invalid quantity true: want a string or a number, ` + quantitySyntax},
		{"object", `{"cpu":1}`, `invalid quantity {"cpu":1}: want a string or a number, ` + quantitySyntax},
		{"list", `[1]`, `invalid quantity [1]: want a string or a number, ` + quantitySyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q Quantity
			err := q.UnmarshalJSON([]byte(tt.in))
			if err == nil {
				t.Fatalf("UnmarshalJSON(%s) = %v, want an error", tt.in, q)
			}
			if err.Error() != tt.want {
				t.Errorf("UnmarshalJSON(%s) error = %q, want %q", tt.in, err.Error(), tt.want)
			}
			if !errors.Is(err, errdefs.ErrBadRequest) {
				t.Errorf("UnmarshalJSON(%s) error %v is not of class ErrBadRequest", tt.in, err)
			}
		})
	}
}

func TestQuantityJSONRoundTrip(t *testing.T) {
	type resources struct {
		CPU    Quantity  `json:"cpu"`
		Memory *Quantity `json:"memory,omitempty"`
		Zero   Quantity  `json:"zero"`
	}
	mem := NewQuantity(512 << 20)
	in := resources{CPU: MustParseQuantity("1.5"), Memory: &mem}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatalf("json.Marshal error: %v", err)
	}
	if want := `{"cpu":"1.5","memory":"512Mi","zero":"0"}`; string(data) != want {
		t.Errorf("json.Marshal = %s, want %s", data, want)
	}
	var out resources
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("json.Unmarshal(%s) error: %v", data, err)
	}
	if out.CPU.Cmp(in.CPU) != 0 || out.Memory == nil || out.Memory.Cmp(mem) != 0 || !out.Zero.IsZero() {
		t.Errorf("json.Unmarshal(%s) = %+v, want %+v", data, out, in)
	}
}

func FuzzParseQuantity(f *testing.F) {
	for _, s := range []string{
		"", "0", "1", "0.5", "2.25", "250m", "1k", "64Mi", "1Gi", "1e3", "1E3", "1E",
		"+1", "-1", "0.0001", "64MB", "1mi", "9223372036854775807m", "9223372036854775808m",
		"0.0078125Ei", "1e999999999", "0e999999999", " 1", "1.", ".5",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := ParseQuantity(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "invalid quantity ") {
				t.Fatalf("ParseQuantity(%q) error %q does not start with %q", s, err, "invalid quantity ")
			}
			return
		}
		if q.MilliValue() < 0 {
			t.Fatalf("ParseQuantity(%q) = %dm, want a non-negative quantity", s, q.MilliValue())
		}
		if q.String() != s {
			t.Fatalf("ParseQuantity(%q).String() = %q, want the input", s, q.String())
		}
		// Both the original and the canonical form parse back to the value.
		for _, form := range []string{q.String(), NewMilliQuantity(q.MilliValue()).String()} {
			back, err := ParseQuantity(form)
			if err != nil {
				t.Fatalf("ParseQuantity(%q) (from %q) error: %v", form, s, err)
			}
			if back.MilliValue() != q.MilliValue() {
				t.Fatalf("ParseQuantity(%q) = %dm, want %dm as for %q", form, back.MilliValue(), q.MilliValue(), s)
			}
		}
		// The JSON form decodes to the same value.
		data, err := json.Marshal(q)
		if err != nil {
			t.Fatalf("json.Marshal(%q) error: %v", s, err)
		}
		var back Quantity
		if err := json.Unmarshal(data, &back); err != nil || back.MilliValue() != q.MilliValue() {
			t.Fatalf("json.Unmarshal(%s) = %dm, %v, want %dm", data, back.MilliValue(), err, q.MilliValue())
		}
	})
}
