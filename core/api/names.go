package api

import (
	"strconv"
	"strings"
)

// Length limits of names, label keys and label values.
const (
	dns1123LabelMaxLength     = 63
	dns1123SubdomainMaxLength = 253
	qualifiedNameMaxLength    = 63
	labelValueMaxLength       = 63
)

// What the checks below accept, as the messages they return say it.
const (
	msgNotEmpty            = "must not be empty"
	dns1123LabelSyntax     = "must consist of lower-case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. my-name or 123-abc)"
	dns1123SubdomainSyntax = "must consist of lower-case alphanumeric characters, '-' or '.', and each dot-separated part must start and end with an alphanumeric character (e.g. example.com)"
	qualifiedNameSyntax    = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. MyName, my.name or 123-abc)"
	labelValueSyntax       = "must be empty or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. MyValue, my.value or 123-abc)"
	labelKeySyntax         = "must be a name with an optional DNS subdomain prefix and '/' (e.g. app or example.com/app)"
	envVarNameSyntax       = "must consist of letters, digits, '_', '-' or '.', and must not start with a digit (e.g. MY_VAR or my.var)"
	portNumberRange        = "must be between 1 and 65535, inclusive"
)

// IsDNS1123Label checks that s is a DNS label as RFC 1123 defines it: 1 to
// 63 lower-case alphanumeric characters or '-', starting and ending with an
// alphanumeric character. It returns what is wrong with s, or nothing if s
// is valid.
func IsDNS1123Label(s string) []string {
	if s == "" {
		return []string{msgNotEmpty}
	}
	var msgs []string
	if len(s) > dns1123LabelMaxLength {
		msgs = append(msgs, maxLengthMessage(dns1123LabelMaxLength))
	}
	if !isDNS1123LabelChars(s) {
		msgs = append(msgs, dns1123LabelSyntax)
	}
	return msgs
}

// IsDNS1123Subdomain checks that s is a DNS subdomain as RFC 1123 defines
// it: at most 253 characters of dot-separated parts, each made like a DNS
// label. As in Kubernetes, the parts are not limited to 63 characters each.
// It returns what is wrong with s, or nothing if s is valid.
func IsDNS1123Subdomain(s string) []string {
	if s == "" {
		return []string{msgNotEmpty}
	}
	var msgs []string
	if len(s) > dns1123SubdomainMaxLength {
		msgs = append(msgs, maxLengthMessage(dns1123SubdomainMaxLength))
	}
	for part := range strings.SplitSeq(s, ".") {
		if !isDNS1123LabelChars(part) {
			msgs = append(msgs, dns1123SubdomainSyntax)
			break
		}
	}
	return msgs
}

// IsLabelKey checks that s is a label (or annotation) key: a name of 1 to
// 63 alphanumeric characters, '-', '_' or '.' that starts and ends with an
// alphanumeric character, optionally after a DNS subdomain prefix and '/'
// ("app", "example.com/app"). It returns what is wrong with s, or nothing if
// s is valid.
func IsLabelKey(s string) []string {
	prefix, name, hasPrefix := strings.Cut(s, "/")
	if !hasPrefix {
		return qualifiedNameProblems(s)
	}
	if strings.Contains(name, "/") {
		return []string{labelKeySyntax}
	}
	var msgs []string
	for _, m := range IsDNS1123Subdomain(prefix) {
		msgs = append(msgs, "prefix part "+m)
	}
	for _, m := range qualifiedNameProblems(name) {
		msgs = append(msgs, "name part "+m)
	}
	return msgs
}

// IsLabelValue checks that s is a label value: empty, or at most 63
// alphanumeric characters, '-', '_' or '.' that start and end with an
// alphanumeric character. It returns what is wrong with s, or nothing if s
// is valid.
func IsLabelValue(s string) []string {
	var msgs []string
	if len(s) > labelValueMaxLength {
		msgs = append(msgs, maxLengthMessage(labelValueMaxLength))
	}
	if s != "" && !isQualifiedNameChars(s) {
		msgs = append(msgs, labelValueSyntax)
	}
	return msgs
}

// IsEnvVarName checks that s is a valid environment variable name: letters,
// digits, '_', '-' and '.', not starting with a digit. It returns what is
// wrong with s, or nothing if s is valid.
func IsEnvVarName(s string) []string {
	if s == "" {
		return []string{msgNotEmpty}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isASCIILetter(c) && c != '-' && c != '.' && c != '_' && (i == 0 || !isASCIIDigit(c)) {
			return []string{envVarNameSyntax}
		}
	}
	return nil
}

// IsPortNumber checks that p is a TCP or UDP port number, 1 to 65535. It
// returns what is wrong with p, or nothing if p is valid.
func IsPortNumber(p int32) []string {
	if p < 1 || p > 65535 {
		return []string{portNumberRange}
	}
	return nil
}

// qualifiedNameProblems checks the name part of a label key.
func qualifiedNameProblems(s string) []string {
	if s == "" {
		return []string{msgNotEmpty}
	}
	var msgs []string
	if len(s) > qualifiedNameMaxLength {
		msgs = append(msgs, maxLengthMessage(qualifiedNameMaxLength))
	}
	if !isQualifiedNameChars(s) {
		msgs = append(msgs, qualifiedNameSyntax)
	}
	return msgs
}

func maxLengthMessage(n int) string {
	return "must be no more than " + strconv.Itoa(n) + " characters"
}

// The character checks below are the one implementation of the character
// sets of names, label keys and values and selector fields; selector.go
// uses them too.

// isDNS1123LabelChars reports whether s is made like a DNS label, ignoring
// its length: [a-z0-9]([-a-z0-9]*[a-z0-9])?
func isDNS1123LabelChars(s string) bool {
	if s == "" || !isLowerAlnum(s[0]) || !isLowerAlnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; !isLowerAlnum(c) && c != '-' {
			return false
		}
	}
	return true
}

// isQualifiedNameChars reports whether s is made like the name part of a
// label key or a non-empty label value, ignoring its length:
// [A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?
func isQualifiedNameChars(s string) bool {
	if s == "" || !isASCIIAlnum(s[0]) || !isASCIIAlnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; !isASCIIAlnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// isASCIIDigit reports whether c is 0-9.
func isASCIIDigit(c byte) bool { return '0' <= c && c <= '9' }

// isASCIILetter reports whether c is a-z or A-Z.
func isASCIILetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// isASCIIAlnum reports whether c is a-z, A-Z or 0-9.
func isASCIIAlnum(c byte) bool { return isASCIILetter(c) || isASCIIDigit(c) }

// isLowerAlnum reports whether c is a-z or 0-9.
func isLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || isASCIIDigit(c) }
