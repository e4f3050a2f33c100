package api

import (
	"slices"
	"strings"
	"testing"
)

// nameCheckCase is a case of a name check: the input and the messages the
// check must return (none if the input is valid).
type nameCheckCase struct {
	name string
	in   string
	want []string
}

// runNameChecks runs cases against check, which is called fn in failure
// messages.
func runNameChecks(t *testing.T, fn string, check func(string) []string, cases []nameCheckCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			got := check(tt.in)
			if !slices.Equal(got, tt.want) {
				t.Errorf("%s(%q) = %q, want %q", fn, tt.in, got, tt.want)
			}
			for _, m := range got {
				if m == "" || strings.ToLower(m[:1]) != m[:1] || strings.HasSuffix(m, ".") {
					t.Errorf("%s(%q) message %q: want a lower-case fragment without a trailing period", fn, tt.in, m)
				}
			}
		})
	}
}

func TestIsDNS1123Label(t *testing.T) {
	tooLong := []string{maxLengthMessage(63)}
	runNameChecks(t, "IsDNS1123Label", IsDNS1123Label, []nameCheckCase{
		{"simple", "web", nil},
		{"with dash", "my-name", nil},
		{"starts with digit", "123-abc", nil},
		{"single char", "a", nil},
		{"single digit", "0", nil},
		{"63 chars", strings.Repeat("a", 63), nil},
		{"empty", "", []string{msgNotEmpty}},
		{"64 chars", strings.Repeat("a", 64), tooLong},
		{"64 chars and bad", strings.Repeat("A", 64), append(tooLong, dns1123LabelSyntax)},
		{"upper case", "Web", []string{dns1123LabelSyntax}},
		{"leading dash", "-web", []string{dns1123LabelSyntax}},
		{"trailing dash", "web-", []string{dns1123LabelSyntax}},
		{"dot", "my.name", []string{dns1123LabelSyntax}},
		{"underscore", "my_name", []string{dns1123LabelSyntax}},
		{"space", "my name", []string{dns1123LabelSyntax}},
		{"non-ASCII", "wéb", []string{dns1123LabelSyntax}},
	})
}

func TestIsDNS1123Subdomain(t *testing.T) {
	runNameChecks(t, "IsDNS1123Subdomain", IsDNS1123Subdomain, []nameCheckCase{
		{"single label", "node1", nil},
		{"dotted", "example.com", nil},
		{"many parts", "a.b-c.d1", nil},
		{"long part", strings.Repeat("a", 100) + ".com", nil},
		{"253 chars", strings.Repeat("a", 253), nil},
		{"empty", "", []string{msgNotEmpty}},
		{"254 chars", strings.Repeat("a", 254), []string{maxLengthMessage(253)}},
		{"upper case", "Example.com", []string{dns1123SubdomainSyntax}},
		{"leading dot", ".example.com", []string{dns1123SubdomainSyntax}},
		{"trailing dot", "example.com.", []string{dns1123SubdomainSyntax}},
		{"double dot", "example..com", []string{dns1123SubdomainSyntax}},
		{"dash before dot", "example-.com", []string{dns1123SubdomainSyntax}},
		{"dash after dot", "example.-com", []string{dns1123SubdomainSyntax}},
		{"slash", "example.com/app", []string{dns1123SubdomainSyntax}},
	})
}

func TestIsLabelKey(t *testing.T) {
	runNameChecks(t, "IsLabelKey", IsLabelKey, []nameCheckCase{
		{"simple", "app", nil},
		{"mixed case", "MyApp", nil},
		{"inner punctuation", "my.app_name-1", nil},
		{"prefixed", "example.com/app", nil},
		{"prefixed label", "paddock/tier", nil},
		{"63 char name", strings.Repeat("a", 63), nil},
		{"long prefix", strings.Repeat("a", 253) + "/a", nil},
		{"empty", "", []string{msgNotEmpty}},
		{"64 char name", strings.Repeat("a", 64), []string{maxLengthMessage(63)}},
		{"leading dash", "-app", []string{qualifiedNameSyntax}},
		{"trailing dot", "app.", []string{qualifiedNameSyntax}},
		{"space", "my app", []string{qualifiedNameSyntax}},
		{"equals", "a=b", []string{qualifiedNameSyntax}},
		{"empty prefix", "/app", []string{"prefix part " + msgNotEmpty}},
		{"empty name after prefix", "example.com/", []string{"name part " + msgNotEmpty}},
		{"bad prefix", "Example.com/app", []string{"prefix part " + dns1123SubdomainSyntax}},
		{"long prefix and bad name", strings.Repeat("a", 254) + "/-", []string{"prefix part " + maxLengthMessage(253), "name part " + qualifiedNameSyntax}},
		{"two slashes", "a/b/c", []string{labelKeySyntax}},
	})
}

func TestIsLabelValue(t *testing.T) {
	runNameChecks(t, "IsLabelValue", IsLabelValue, []nameCheckCase{
		{"empty", "", nil},
		{"simple", "web", nil},
		{"mixed", "My.Value_1-x", nil},
		{"single char", "x", nil},
		{"63 chars", strings.Repeat("v", 63), nil},
		{"64 chars", strings.Repeat("v", 64), []string{maxLengthMessage(63)}},
		{"64 chars and bad", strings.Repeat("v", 63) + "-", []string{maxLengthMessage(63), labelValueSyntax}},
		{"leading underscore", "_web", []string{labelValueSyntax}},
		{"trailing dash", "web-", []string{labelValueSyntax}},
		{"slash", "a/b", []string{labelValueSyntax}},
		{"space", "a b", []string{labelValueSyntax}},
		{"comma", "a,b", []string{labelValueSyntax}},
	})
}

func TestIsEnvVarName(t *testing.T) {
	runNameChecks(t, "IsEnvVarName", IsEnvVarName, []nameCheckCase{
		{"upper", "PATH", nil},
		{"underscore", "MY_VAR", nil},
		{"dotted", "my.var", nil},
		{"dash", "my-var", nil},
		{"leading underscore", "_X", nil},
		{"leading dot", ".x", nil},
		{"leading dash", "-x", nil},
		{"digits after", "VAR1", nil},
		{"empty", "", []string{msgNotEmpty}},
		{"leading digit", "1VAR", []string{envVarNameSyntax}},
		{"equals", "A=B", []string{envVarNameSyntax}},
		{"space", "MY VAR", []string{envVarNameSyntax}},
		{"dollar", "$HOME", []string{envVarNameSyntax}},
		{"non-ASCII", "VÄR", []string{envVarNameSyntax}},
	})
}

func TestIsPortNumber(t *testing.T) {
	tests := []struct {
		name string
		in   int32
		want []string
	}{
		{"one", 1, nil},
		{"http", 80, nil},
		{"largest", 65535, nil},
		{"zero", 0, []string{portNumberRange}},
		{"negative", -1, []string{portNumberRange}},
		{"too large", 65536, []string{portNumberRange}},
		{"int32 max", 1<<31 - 1, []string{portNumberRange}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsPortNumber(tt.in); !slices.Equal(got, tt.want) {
				t.Errorf("IsPortNumber(%d) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
