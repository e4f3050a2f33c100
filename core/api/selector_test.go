package api

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/paddock-dev/paddock/core/errdefs"
)

func TestParseSelector(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // String() of the parsed selector
	}{
		{"empty", "", ""},
		{"blank", " \t\n ", ""},
		{"equals", "app=web", "app=web"},
		{"double equals", "app==web", "app=web"},
		{"not equals", "app!=web", "app!=web"},
		{"exists", "app", "app"},
		{"not exists", "!app", "!app"},
		{"not exists with space", "! app", "!app"},
		{"in", "tier in (front,back)", "tier in (back,front)"},
		{"notin", "tier notin (front,back)", "tier notin (back,front)"},
		{"in without spaces before paren", "tier in(front)", "tier=front"},
		{"in with one value", "tier in (front)", "tier=front"},
		{"notin with one value", "tier notin (front)", "tier!=front"},
		{"in with duplicate values", "tier in (b,a,b)", "tier in (a,b)"},
		{"empty value", "app=", "app="},
		{"empty not value", "app!=", "app!="},
		{"empty value then more", "app=,tier", "app=,tier"},
		{"empty value in set", "app in (,web)", "app in (,web)"},
		{"only empty values in set", "app in (,)", "app="},
		{"trailing empty value in set", "app in (web,)", "app in (,web)"},
		{"whitespace everywhere", "  app = web ,  tier in ( front , back ) , ! debug ", "app=web,!debug,tier in (back,front)"},
		{"tabs and newlines", "app\t==\nweb", "app=web"},
		{"sorted by key", "z=1,a=2,m", "a=2,m,z=1"},
		{"duplicates dropped", "a=1,a=1,a==1", "a=1"},
		{"conflicting kept", "a=1,a=2", "a=1,a=2"},
		{"prefixed key", "example.com/app=web", "example.com/app=web"},
		{"key named in", "in in (in,notin)", "in in (in,notin)"},
		{"key named notin", "notin=in", "notin=in"},
		{"value with dots", "version=1.2.3", "version=1.2.3"},
		{"mixed case", "App=Web", "App=Web"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := ParseSelector(tt.in)
			if err != nil {
				t.Fatalf("ParseSelector(%q) error: %v", tt.in, err)
			}
			if got := sel.String(); got != tt.want {
				t.Errorf("ParseSelector(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if got, want := sel.Empty(), tt.want == ""; got != want {
				t.Errorf("ParseSelector(%q).Empty() = %v, want %v", tt.in, got, want)
			}
			again, err := ParseSelector(sel.String())
			if err != nil {
				t.Fatalf("ParseSelector(%q) (the String of %q) error: %v", sel.String(), tt.in, err)
			}
			if again.String() != sel.String() {
				t.Errorf("ParseSelector(%q) = %q, want it unchanged", sel.String(), again.String())
			}
		})
	}
}

func TestParseSelectorErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // the whole error text
	}{
		{"missing paren", "app in (web", `label selector "app in (web": missing ")"`},
		{"missing paren after comma", "app in (web,", `label selector "app in (web,": missing ")"`},
		{"missing open paren", "app in web", `label selector "app in web": want "(" after "app in", got "web" at offset 7`},
		{"in at end", "app in", `label selector "app in": want "(" after "app in", got end of selector`},
		{"empty set", "app in ()", `label selector "app in ()": empty value set in "app in ()": want at least one value, as in app in (value1,value2)`},
		{"space in set", "app in (a b)", `label selector "app in (a b)": unexpected "b" at offset 10 in the values of "app in": want values separated by "," and a closing ")"`},
		{"two values", "app=web api", `label selector "app=web api": unexpected "api" at offset 8 after "app=web": want "," between requirements`},
		{"unknown operator", "app ~ web", `label selector "app ~ web": unexpected "~" at offset 4 after key "app": want =, ==, !=, in, notin, "," or the end`},
		{"value for not exists", "!app=web", `label selector "!app=web": unexpected "=" at offset 4 after "!app": want "," between requirements`},
		{"trailing comma", "app=web,", `label selector "app=web,": want a requirement, got end of selector: ` + selectorSyntax},
		{"double comma", "a,,b", `label selector "a,,b": want a requirement, got "," at offset 2: ` + selectorSyntax},
		{"leading comma", ",a", `label selector ",a": want a requirement, got "," at offset 0: ` + selectorSyntax},
		{"operator first", "=web", `label selector "=web": want a requirement, got "=" at offset 0: ` + selectorSyntax},
		{"bang alone", "!", `label selector "!": want a key after "!", got end of selector`},
		{"double bang", "!!a", `label selector "!!a": want a key after "!", got "!" at offset 1`},
		{"bad key", "-app=web", `label selector "-app=web": invalid key "-app" at offset 0: ` + qualifiedNameSyntax},
		{"bad prefixed key", "Example.com/app", `label selector "Example.com/app": invalid key "Example.com/app" at offset 0: prefix part ` + dns1123SubdomainSyntax},
		{"bad value", "app=-web", `label selector "app=-web": invalid value "-web" for key "app": ` + labelValueSyntax},
		{"bad value in set", "app in (a,b/c)", `label selector "app in (a,b/c)": invalid value "b/c" for key "app": ` + labelValueSyntax},
		{"long value", "app=" + strings.Repeat("v", 64), `label selector "app=` + strings.Repeat("v", 64) + `": invalid value "` + strings.Repeat("v", 64) + `" for key "app": ` + maxLengthMessage(63)},
		{"operator after operator", "app=!web", `label selector "app=!web": want a value after "app=", got "!" at offset 4`},
		{"paren as value", "app=(web)", `label selector "app=(web)": want a value after "app=", got "(" at offset 4`},
		{"triple equals", "app===web", `label selector "app===web": want a value after "app==", got "=" at offset 5`},
		{"close paren alone", "app)", `label selector "app)": unexpected ")" at offset 3 after key "app": want =, ==, !=, in, notin, "," or the end`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := ParseSelector(tt.in)
			if err == nil {
				t.Fatalf("ParseSelector(%q) = %q, want an error", tt.in, sel.String())
			}
			if err.Error() != tt.want {
				t.Errorf("ParseSelector(%q) error = %q, want %q", tt.in, err.Error(), tt.want)
			}
			if !errors.Is(err, errdefs.ErrBadRequest) {
				t.Errorf("ParseSelector(%q) error %v is not of class ErrBadRequest", tt.in, err)
			}
		})
	}
}

func TestSelectorMatches(t *testing.T) {
	web := map[string]string{"app": "web", "tier": "front", "empty": ""}
	tests := []struct {
		name     string
		selector string
		labels   map[string]string
		want     bool
	}{
		{"empty selects all", "", web, true},
		{"empty selects nil", "", nil, true},
		{"equals", "app=web", web, true},
		{"equals other", "app=db", web, false},
		{"equals absent", "role=x", web, false},
		{"equals empty value", "empty=", web, true},
		{"equals empty value absent", "role=", web, false},
		{"not equals", "app!=db", web, true},
		{"not equals same", "app!=web", web, false},
		{"not equals absent", "role!=x", web, true},
		{"not equals on nil", "role!=x", nil, true},
		{"in", "tier in (front,back)", web, true},
		{"in other", "tier in (back,db)", web, false},
		{"in absent", "role in (a,b)", web, false},
		{"in with empty value", "empty in (,x)", web, true},
		{"notin", "tier notin (back,db)", web, true},
		{"notin same", "tier notin (front,back)", web, false},
		{"notin absent", "role notin (a,b)", web, true},
		{"exists", "app", web, true},
		{"exists empty value", "empty", web, true},
		{"exists absent", "role", web, false},
		{"exists on nil", "role", nil, false},
		{"not exists", "!role", web, true},
		{"not exists present", "!app", web, false},
		{"all met", "app=web,tier in (front),!role,empty", web, true},
		{"one not met", "app=web,tier in (back)", web, false},
		{"conflicting", "app=web,app=db", web, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := ParseSelector(tt.selector)
			if err != nil {
				t.Fatalf("ParseSelector(%q) error: %v", tt.selector, err)
			}
			if got := sel.Matches(tt.labels); got != tt.want {
				t.Errorf("ParseSelector(%q).Matches(%v) = %v, want %v", tt.selector, tt.labels, got, tt.want)
			}
		})
	}
}

func TestZeroSelector(t *testing.T) {
	var s Selector
	if !s.Empty() || s.String() != "" || !s.Matches(map[string]string{"a": "b"}) {
		t.Errorf("zero Selector: Empty() = %v, String() = %q, Matches = %v, want true, \"\", true", s.Empty(), s.String(), s.Matches(map[string]string{"a": "b"}))
	}
	var f FieldSelector
	if !f.Empty() || f.String() != "" || !f.Matches(func(string) (string, bool) { return "", false }) || len(f.Requirements()) != 0 {
		t.Errorf("zero FieldSelector is not empty or does not select everything")
	}
}

func TestParseFieldSelector(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []FieldRequirement
		str  string // String() of the parsed selector
	}{
		{"empty", "", nil, ""},
		{"blank", "  ", nil, ""},
		{"equals", "metadata.name=web", []FieldRequirement{{"metadata.name", "=", "web"}}, "metadata.name=web"},
		{"double equals", "metadata.name==web", []FieldRequirement{{"metadata.name", "=", "web"}}, "metadata.name=web"},
		{"not equals", "status.phase!=Running", []FieldRequirement{{"status.phase", "!=", "Running"}}, "status.phase!=Running"},
		{"empty value", "spec.nodeName=", []FieldRequirement{{"spec.nodeName", "=", ""}}, "spec.nodeName="},
		{"empty not value", "spec.nodeName!=", []FieldRequirement{{"spec.nodeName", "!=", ""}}, "spec.nodeName!="},
		{"single-part field", "type=Opaque", []FieldRequirement{{"type", "=", "Opaque"}}, "type=Opaque"},
		{"value with slash", "type=paddock.dev/token", []FieldRequirement{{"type", "=", "paddock.dev/token"}}, "type=paddock.dev/token"},
		{"value with colons", "spec.clusterIP=fd00::1", []FieldRequirement{{"spec.clusterIP", "=", "fd00::1"}}, "spec.clusterIP=fd00::1"},
		{"sorted", "status.phase!=Failed,spec.nodeName=n1", []FieldRequirement{{"spec.nodeName", "=", "n1"}, {"status.phase", "!=", "Failed"}}, "spec.nodeName=n1,status.phase!=Failed"},
		{"whitespace", " spec.nodeName = n1 , status.phase != Failed ", []FieldRequirement{{"spec.nodeName", "=", "n1"}, {"status.phase", "!=", "Failed"}}, "spec.nodeName=n1,status.phase!=Failed"},
		{"duplicates dropped", "a=1,a==1", []FieldRequirement{{"a", "=", "1"}}, "a=1"},
		{"same field twice", "a!=1,a!=2", []FieldRequirement{{"a", "!=", "1"}, {"a", "!=", "2"}}, "a!=1,a!=2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := ParseFieldSelector(tt.in)
			if err != nil {
				t.Fatalf("ParseFieldSelector(%q) error: %v", tt.in, err)
			}
			if got := sel.Requirements(); !slices.Equal(got, tt.want) {
				t.Errorf("ParseFieldSelector(%q).Requirements() = %v, want %v", tt.in, got, tt.want)
			}
			if got := sel.String(); got != tt.str {
				t.Errorf("ParseFieldSelector(%q).String() = %q, want %q", tt.in, got, tt.str)
			}
			if got, want := sel.Empty(), len(tt.want) == 0; got != want {
				t.Errorf("ParseFieldSelector(%q).Empty() = %v, want %v", tt.in, got, want)
			}
		})
	}
}

func TestParseFieldSelectorErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"no operator", "metadata.name", `field selector "metadata.name": requirement "metadata.name" has no operator: ` + fieldSelectorSyntax},
		{"trailing comma", "a=b,", `field selector "a=b,": requirement 2 is empty: ` + fieldSelectorSyntax},
		{"double comma", "a=b,,c=d", `field selector "a=b,,c=d": requirement 2 is empty: ` + fieldSelectorSyntax},
		{"lone bang", "a!b", `field selector "a!b": requirement "a!b": want "!=", not a lone "!": ` + fieldSelectorSyntax},
		{"empty field", "=web", `field selector "=web": invalid field "" in requirement "=web": want letters and digits in dot-separated parts, such as metadata.name or status.phase`},
		{"bad field", "metadata-name=web", `field selector "metadata-name=web": invalid field "metadata-name" in requirement "metadata-name=web": want letters and digits in dot-separated parts, such as metadata.name or status.phase`},
		{"field with empty part", "metadata..name=web", `field selector "metadata..name=web": invalid field "metadata..name" in requirement "metadata..name=web": want letters and digits in dot-separated parts, such as metadata.name or status.phase`},
		{"field with space", "metadata name=web", `field selector "metadata name=web": invalid field "metadata name" in requirement "metadata name=web": want letters and digits in dot-separated parts, such as metadata.name or status.phase`},
		{"in operator", "a in (b)", `field selector "a in (b)": requirement "a in (b)" has no operator: ` + fieldSelectorSyntax},
		{"triple equals", "a===b", `field selector "a===b": invalid value "=b" in requirement "a===b": want printable ASCII other than space, ',', '=' and '!'`},
		{"two operators", "a=b!=c", `field selector "a=b!=c": invalid value "b!=c" in requirement "a=b!=c": want printable ASCII other than space, ',', '=' and '!'`},
		{"space in value", "a=b c", `field selector "a=b c": invalid value "b c" in requirement "a=b c": want printable ASCII other than space, ',', '=' and '!'`},
		{"non-ASCII value", "a=wéb", `field selector "a=wéb": invalid value "wéb" in requirement "a=wéb": want printable ASCII other than space, ',', '=' and '!'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := ParseFieldSelector(tt.in)
			if err == nil {
				t.Fatalf("ParseFieldSelector(%q) = %q, want an error", tt.in, sel.String())
			}
			if err.Error() != tt.want {
				t.Errorf("ParseFieldSelector(%q) error = %q, want %q", tt.in, err.Error(), tt.want)
			}
			if !errors.Is(err, errdefs.ErrBadRequest) {
				t.Errorf("ParseFieldSelector(%q) error %v is not of class ErrBadRequest", tt.in, err)
			}
		})
	}
}

func TestFieldSelectorMatches(t *testing.T) {
	pod := map[string]string{"metadata.name": "web-1", "spec.nodeName": "", "status.phase": "Running"}
	get := func(field string) (string, bool) {
		v, ok := pod[field]
		return v, ok
	}
	tests := []struct {
		name     string
		selector string
		want     bool
	}{
		{"empty", "", true},
		{"equals", "metadata.name=web-1", true},
		{"equals other", "metadata.name=web-2", false},
		{"equals empty value", "spec.nodeName=", true},
		{"not equals empty value", "spec.nodeName!=", false},
		{"not equals", "status.phase!=Failed", true},
		{"not equals same", "status.phase!=Running", false},
		{"unknown field never equals", "spec.unknown=", false},
		{"unknown field never equals a value", "spec.unknown=x", false},
		{"unknown field always not equals", "spec.unknown!=x", true},
		{"unknown field not equals empty", "spec.unknown!=", true},
		{"all met", "metadata.name=web-1,status.phase!=Failed", true},
		{"one not met", "metadata.name=web-1,status.phase=Failed", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := ParseFieldSelector(tt.selector)
			if err != nil {
				t.Fatalf("ParseFieldSelector(%q) error: %v", tt.selector, err)
			}
			if got := sel.Matches(get); got != tt.want {
				t.Errorf("ParseFieldSelector(%q).Matches(%v) = %v, want %v", tt.selector, pod, got, tt.want)
			}
		})
	}
}

func TestFieldSelectorValue(t *testing.T) {
	tests := []struct {
		name     string
		selector string
		field    string
		want     string
		wantOK   bool
	}{
		{"equality", "spec.nodeName=node1", "spec.nodeName", "node1", true},
		{"double equals", "spec.nodeName==node1", "spec.nodeName", "node1", true},
		{"empty value", "spec.nodeName=", "spec.nodeName", "", true},
		{"among others", "status.phase!=Failed,spec.nodeName=node1", "spec.nodeName", "node1", true},
		{"not equals does not count", "spec.nodeName!=node1", "spec.nodeName", "", false},
		{"other field", "metadata.name=node1", "spec.nodeName", "", false},
		{"empty selector", "", "spec.nodeName", "", false},
		{"two values gives first in order", "spec.nodeName=b,spec.nodeName=a", "spec.nodeName", "a", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := ParseFieldSelector(tt.selector)
			if err != nil {
				t.Fatalf("ParseFieldSelector(%q) error: %v", tt.selector, err)
			}
			got, ok := sel.Value(tt.field)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("ParseFieldSelector(%q).Value(%q) = %q, %v, want %q, %v", tt.selector, tt.field, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestFieldSelectorRequirementsIsACopy(t *testing.T) {
	sel, err := ParseFieldSelector("spec.nodeName=node1")
	if err != nil {
		t.Fatalf("ParseFieldSelector error: %v", err)
	}
	sel.Requirements()[0].Value = "other"
	if v, _ := sel.Value("spec.nodeName"); v != "node1" {
		t.Errorf("changing Requirements() changed the selector: Value = %q, want %q", v, "node1")
	}
}

// selectorFuzzLabels returns label sets to compare two selectors on: no
// labels, and for each key in s, the key with several values.
func selectorFuzzLabels(s string) []map[string]string {
	sets := []map[string]string{nil}
	words := strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(" \t\n\r,=!()", r) })
	all := map[string]string{}
	for _, w := range words {
		for _, v := range []string{"", w, "other"} {
			sets = append(sets, map[string]string{w: v})
		}
		all[w] = w
	}
	return append(sets, all, maps.Clone(all))
}

func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{
		"", "app=web", "app==web", "app!=web", "app", "!app", "tier in (front,back)",
		"tier notin (front, back)", "app=,tier", "app in (,)", "a=1,b in (x,y),!c,d",
		"example.com/app=web", "in in (in)", "app in (web", "app in ()", "!!a", "a,,b",
		"  app = web  ", "-app=web", "app=web api",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseSelector(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "label selector ") {
				t.Fatalf("ParseSelector(%q) error %q does not start with %q", s, err, "label selector ")
			}
			return
		}
		str := sel.String()
		again, err := ParseSelector(str)
		if err != nil {
			t.Fatalf("ParseSelector(%q) (the String of %q) error: %v", str, s, err)
		}
		if again.String() != str {
			t.Fatalf("ParseSelector(%q).String() = %q, want %q (from %q)", str, again.String(), str, s)
		}
		if sel.Empty() != (str == "") {
			t.Fatalf("ParseSelector(%q): Empty() = %v but String() = %q", s, sel.Empty(), str)
		}
		for _, labels := range selectorFuzzLabels(s) {
			if sel.Matches(labels) != again.Matches(labels) {
				t.Fatalf("ParseSelector(%q) and ParseSelector(%q) disagree on %v", s, str, labels)
			}
		}
	})
}

func FuzzParseFieldSelector(f *testing.F) {
	for _, s := range []string{
		"", "metadata.name=web", "metadata.name==web", "status.phase!=Running", "spec.nodeName=",
		"a=1,b!=2", " a = 1 ", "a=b,", "a!b", "a===b", "=x", "a.b.c=d/e:f",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseFieldSelector(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "field selector ") {
				t.Fatalf("ParseFieldSelector(%q) error %q does not start with %q", s, err, "field selector ")
			}
			return
		}
		str := sel.String()
		again, err := ParseFieldSelector(str)
		if err != nil {
			t.Fatalf("ParseFieldSelector(%q) (the String of %q) error: %v", str, s, err)
		}
		if again.String() != str {
			t.Fatalf("ParseFieldSelector(%q).String() = %q, want %q (from %q)", str, again.String(), str, s)
		}
		if !slices.Equal(sel.Requirements(), again.Requirements()) {
			t.Fatalf("ParseFieldSelector(%q).Requirements() = %v, want %v", str, again.Requirements(), sel.Requirements())
		}
		for _, r := range sel.Requirements() {
			if r.Op != "=" && r.Op != "!=" {
				t.Fatalf("ParseFieldSelector(%q) has operator %q, want = or !=", s, r.Op)
			}
			if v, ok := sel.Value(r.Field); ok {
				// Whatever Value reports, every matching object has.
				match := sel.Matches(func(f string) (string, bool) { return "not-" + v, f == r.Field })
				if match {
					t.Fatalf("ParseFieldSelector(%q) matches %s=%q though Value(%q) = %q", s, r.Field, "not-"+v, r.Field, v)
				}
			}
		}
	})
}
