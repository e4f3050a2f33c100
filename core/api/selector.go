package api

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/paddock-dev/paddock/core/errdefs"
)

// Selector selects objects by their labels. It is parsed from the
// Kubernetes label selector syntax by ParseSelector. The zero Selector
// selects everything.
type Selector struct {
	// reqs are the requirements, all of which a set of labels must meet,
	// sorted and without duplicates.
	reqs []labelRequirement
}

// labelOp is the operator of a label requirement. "=", "==" and "in" are
// all labelIn; "!=" and "notin" are both labelNotIn.
type labelOp int

const (
	labelExists    labelOp = iota // key
	labelNotExists                // !key
	labelIn                       // key=v, key==v, key in (v1,v2)
	labelNotIn                    // key!=v, key notin (v1,v2)
)

// labelRequirement is one comma-separated part of a label selector.
type labelRequirement struct {
	key    string
	op     labelOp
	values []string // sorted and without duplicates; nil for the existence operators
}

// selectorSyntax lists the forms of a label selector requirement.
const selectorSyntax = "want key, !key, key=value, key!=value, key in (value1,value2) or key notin (value1,value2)"

// ParseSelector parses a label selector in Kubernetes syntax: requirements
// separated by commas, all of which a set of labels must meet. A
// requirement is one of
//
//	key=value, key==value  the label is present and has the value
//	key!=value             the label is absent or has another value
//	key in (v1,v2)         the label is present and has one of the values
//	key notin (v1,v2)      the label is absent or has none of the values
//	key                    the label is present
//	!key                   the label is absent
//
// Keys must be valid label keys and values valid label values (a value may
// be empty: "key=" and "key in (,v)"). Whitespace may surround each token.
// The empty (or blank) string selects everything. The error is of class
// errdefs.ErrBadRequest; it quotes the selector and says where it goes
// wrong and what is valid there.
func ParseSelector(s string) (Selector, error) {
	p := selectorParser{input: s}
	var reqs []labelRequirement
	p.next()
	if p.tok.kind == selTokEnd {
		return Selector{}, nil
	}
	for {
		r, err := p.requirement()
		if err != nil {
			return Selector{}, err
		}
		reqs = append(reqs, r)
		switch p.tok.kind {
		case selTokEnd:
			return Selector{reqs: normalizeRequirements(reqs)}, nil
		case selTokComma:
			p.next()
		default:
			return Selector{}, p.errorf("unexpected %q at offset %d after %q: want \",\" between requirements", p.tok.text, p.tok.pos, strings.TrimSpace(s[p.start:p.tok.pos]))
		}
	}
}

// Matches reports whether labels meet every requirement of the selector.
// A nil map is a set of no labels.
func (s Selector) Matches(labels map[string]string) bool {
	for _, r := range s.reqs {
		v, ok := labels[r.key]
		var match bool
		switch r.op {
		case labelExists:
			match = ok
		case labelNotExists:
			match = !ok
		case labelIn:
			match = ok && slices.Contains(r.values, v)
		case labelNotIn:
			match = !ok || !slices.Contains(r.values, v)
		}
		if !match {
			return false
		}
	}
	return true
}

// Empty reports whether the selector has no requirements and so selects
// everything.
func (s Selector) Empty() bool { return len(s.reqs) == 0 }

// String returns the selector in canonical form, which ParseSelector parses
// back to an equivalent selector: the requirements sorted by key, "=" and
// "!=" for a single value, "in" and "notin" with sorted values otherwise, no
// whitespace except around "in" and "notin" ("app=web,tier in (back,front)").
// The selector that selects everything is "".
func (s Selector) String() string {
	var b strings.Builder
	for i, r := range s.reqs {
		if i > 0 {
			b.WriteByte(',')
		}
		switch {
		case r.op == labelExists:
			b.WriteString(r.key)
		case r.op == labelNotExists:
			b.WriteString("!" + r.key)
		case len(r.values) == 1 && r.op == labelIn:
			b.WriteString(r.key + "=" + r.values[0])
		case len(r.values) == 1:
			b.WriteString(r.key + "!=" + r.values[0])
		case r.op == labelIn:
			b.WriteString(r.key + " in (" + strings.Join(r.values, ",") + ")")
		default:
			b.WriteString(r.key + " notin (" + strings.Join(r.values, ",") + ")")
		}
	}
	return b.String()
}

// normalizeRequirements sorts each requirement's values and the
// requirements, and drops duplicates.
func normalizeRequirements(reqs []labelRequirement) []labelRequirement {
	for i := range reqs {
		slices.Sort(reqs[i].values)
		reqs[i].values = slices.Compact(reqs[i].values)
	}
	slices.SortFunc(reqs, func(a, b labelRequirement) int {
		return cmp.Or(strings.Compare(a.key, b.key), cmp.Compare(a.op, b.op), slices.Compare(a.values, b.values))
	})
	return slices.CompactFunc(reqs, func(a, b labelRequirement) bool {
		return a.key == b.key && a.op == b.op && slices.Equal(a.values, b.values)
	})
}

// The kinds of token of a label selector.
type selectorTokenKind int

const (
	selTokEnd        selectorTokenKind = iota // end of the selector
	selTokIdent                               // a key, a value, in or notin
	selTokComma                               // ,
	selTokEq                                  // = or ==
	selTokNotEq                               // !=
	selTokNot                                 // !
	selTokOpenParen                           // (
	selTokCloseParen                          // )
)

// selectorToken is a token of a label selector and its byte offset.
type selectorToken struct {
	kind selectorTokenKind
	text string
	pos  int
}

// selectorParser parses a label selector one token at a time.
type selectorParser struct {
	input string
	off   int           // offset of the next token
	tok   selectorToken // the current token
	start int           // offset of the current requirement
}

// isSelectorSpace reports whether c is whitespace that may surround tokens.
func isSelectorSpace(c byte) bool { return strings.IndexByte(selectorSpaces, c) >= 0 }

// isSelectorSpecial reports whether c is a character that ends an
// identifier.
func isSelectorSpecial(c byte) bool {
	return isSelectorSpace(c) || c == ',' || c == '=' || c == '!' || c == '(' || c == ')'
}

// next reads the next token into p.tok.
func (p *selectorParser) next() {
	for p.off < len(p.input) && isSelectorSpace(p.input[p.off]) {
		p.off++
	}
	start := p.off
	if start == len(p.input) {
		p.tok = selectorToken{kind: selTokEnd, pos: start}
		return
	}
	kind, n := selTokIdent, 1
	switch p.input[start] {
	case ',':
		kind = selTokComma
	case '(':
		kind = selTokOpenParen
	case ')':
		kind = selTokCloseParen
	case '=':
		kind = selTokEq
		if strings.HasPrefix(p.input[start:], "==") {
			n = 2
		}
	case '!':
		kind = selTokNot
		if strings.HasPrefix(p.input[start:], "!=") {
			kind, n = selTokNotEq, 2
		}
	default:
		for start+n < len(p.input) && !isSelectorSpecial(p.input[start+n]) {
			n++
		}
	}
	p.off = start + n
	p.tok = selectorToken{kind: kind, text: p.input[start:p.off], pos: start}
}

// errorf returns a parse error about the selector.
func (p *selectorParser) errorf(format string, args ...any) error {
	return errdefs.New(errdefs.ErrBadRequest, fmt.Sprintf("label selector %q: ", clipInput(p.input))+fmt.Sprintf(format, args...))
}

// describe names the current token for an error message.
func (p *selectorParser) describe() string {
	if p.tok.kind == selTokEnd {
		return "end of selector"
	}
	return fmt.Sprintf("%q at offset %d", p.tok.text, p.tok.pos)
}

// requirement parses one requirement, starting at the current token, and
// leaves the token after it current.
func (p *selectorParser) requirement() (labelRequirement, error) {
	p.start = p.tok.pos
	switch p.tok.kind {
	case selTokNot:
		p.next()
		if p.tok.kind != selTokIdent {
			return labelRequirement{}, p.errorf("want a key after \"!\", got %s", p.describe())
		}
		key, err := p.key()
		if err != nil {
			return labelRequirement{}, err
		}
		return labelRequirement{key: key, op: labelNotExists}, nil
	case selTokIdent:
	default:
		return labelRequirement{}, p.errorf("want a requirement, got %s: %s", p.describe(), selectorSyntax)
	}

	key, err := p.key()
	if err != nil {
		return labelRequirement{}, err
	}
	switch {
	case p.tok.kind == selTokEnd || p.tok.kind == selTokComma:
		return labelRequirement{key: key, op: labelExists}, nil
	case p.tok.kind == selTokEq || p.tok.kind == selTokNotEq:
		op := labelIn
		if p.tok.kind == selTokNotEq {
			op = labelNotIn
		}
		opText := p.tok.text
		p.next()
		value := ""
		switch p.tok.kind {
		case selTokIdent:
			value = p.tok.text
			p.next()
		case selTokEnd, selTokComma:
			// An empty value.
		default:
			return labelRequirement{}, p.errorf("want a value after \"%s%s\", got %s", key, opText, p.describe())
		}
		if err := p.checkValue(key, value); err != nil {
			return labelRequirement{}, err
		}
		return labelRequirement{key: key, op: op, values: []string{value}}, nil
	case p.tok.kind == selTokIdent && (p.tok.text == "in" || p.tok.text == "notin"):
		op := labelIn
		if p.tok.text == "notin" {
			op = labelNotIn
		}
		values, err := p.valueSet(key, p.tok.text)
		if err != nil {
			return labelRequirement{}, err
		}
		return labelRequirement{key: key, op: op, values: values}, nil
	}
	return labelRequirement{}, p.errorf("unexpected %s after key %q: want =, ==, !=, in, notin, \",\" or the end", p.describe(), key)
}

// key checks that the current token is a valid label key, consumes it and
// returns it.
func (p *selectorParser) key() (string, error) {
	key := p.tok.text
	if msgs := IsLabelKey(key); len(msgs) > 0 {
		return "", p.errorf("invalid key %q at offset %d: %s", key, p.tok.pos, strings.Join(msgs, "; "))
	}
	p.next()
	return key, nil
}

// checkValue checks that value is a valid label value.
func (p *selectorParser) checkValue(key, value string) error {
	if msgs := IsLabelValue(value); len(msgs) > 0 {
		return p.errorf("invalid value %q for key %q: %s", value, key, strings.Join(msgs, "; "))
	}
	return nil
}

// valueSet parses the parenthesized values after key and op ("in" or
// "notin"), which is the current token, and leaves the token after the ")"
// current.
func (p *selectorParser) valueSet(key, op string) ([]string, error) {
	req := key + " " + op
	p.next()
	if p.tok.kind != selTokOpenParen {
		return nil, p.errorf("want \"(\" after %q, got %s", req, p.describe())
	}
	p.next()
	if p.tok.kind == selTokCloseParen {
		return nil, p.errorf("empty value set in %q: want at least one value, as in %s (value1,value2)", req+" ()", req)
	}
	var values []string
	for {
		value := ""
		if p.tok.kind == selTokIdent {
			value = p.tok.text
			p.next()
		}
		if err := p.checkValue(key, value); err != nil {
			return nil, err
		}
		values = append(values, value)
		switch p.tok.kind {
		case selTokComma:
			p.next()
		case selTokCloseParen:
			p.next()
			return values, nil
		case selTokEnd:
			return nil, p.errorf("missing \")\"")
		default:
			return nil, p.errorf("unexpected %s in the values of %q: want values separated by \",\" and a closing \")\"", p.describe(), req)
		}
	}
}

// FieldSelector selects objects by the values of some of their fields,
// such as metadata.name, spec.nodeName and status.phase. It is parsed by
// ParseFieldSelector. The zero FieldSelector selects everything.
type FieldSelector struct {
	// reqs are the requirements, all of which an object must meet, sorted
	// and without duplicates.
	reqs []FieldRequirement
}

// FieldRequirement is one requirement of a field selector.
type FieldRequirement struct {
	// Field is the field's path, such as "spec.nodeName".
	Field string
	// Op is "=" (the field has the value) or "!=" (it does not); "==" is
	// parsed as "=".
	Op string
	// Value is the value the requirement compares the field with. It may be
	// empty: "spec.nodeName=" selects pods on no node.
	Value string
}

// fieldSelectorSyntax lists the forms of a field selector requirement.
const fieldSelectorSyntax = "want field=value, field==value or field!=value"

// ParseFieldSelector parses a field selector: requirements separated by
// commas, each field=value, field==value or field!=value, all of which an
// object must meet. A field is a path of letters and digits separated by
// dots ("metadata.name"); a value is empty or printable ASCII other than
// space, ',', '=' and '!'. Whitespace may surround fields and values. The
// empty (or blank) string selects everything. The error is of class
// errdefs.ErrBadRequest and says what is valid.
func ParseFieldSelector(s string) (FieldSelector, error) {
	if strings.Trim(s, selectorSpaces) == "" {
		return FieldSelector{}, nil
	}
	fail := func(format string, args ...any) (FieldSelector, error) {
		return FieldSelector{}, errdefs.New(errdefs.ErrBadRequest, fmt.Sprintf("field selector %q: ", clipInput(s))+fmt.Sprintf(format, args...))
	}
	var reqs []FieldRequirement
	n := 0
	for part := range strings.SplitSeq(s, ",") {
		n++
		part = strings.Trim(part, selectorSpaces)
		if part == "" {
			return fail("requirement %d is empty: %s", n, fieldSelectorSyntax)
		}
		i := strings.IndexAny(part, "=!")
		if i < 0 {
			return fail("requirement %q has no operator: %s", clipInput(part), fieldSelectorSyntax)
		}
		op, opLen := "=", 1
		switch {
		case strings.HasPrefix(part[i:], "=="):
			opLen = 2
		case strings.HasPrefix(part[i:], "!="):
			op, opLen = "!=", 2
		case part[i] == '!':
			return fail("requirement %q: want \"!=\", not a lone \"!\": %s", clipInput(part), fieldSelectorSyntax)
		}
		field := strings.Trim(part[:i], selectorSpaces)
		value := strings.Trim(part[i+opLen:], selectorSpaces)
		if !isFieldPath(field) {
			return fail("invalid field %q in requirement %q: want letters and digits in dot-separated parts, such as metadata.name or status.phase", clipInput(field), clipInput(part))
		}
		if !isFieldValue(value) {
			return fail("invalid value %q in requirement %q: want printable ASCII other than space, ',', '=' and '!'", clipInput(value), clipInput(part))
		}
		reqs = append(reqs, FieldRequirement{Field: field, Op: op, Value: value})
	}
	slices.SortFunc(reqs, func(a, b FieldRequirement) int {
		return cmp.Or(strings.Compare(a.Field, b.Field), strings.Compare(a.Op, b.Op), strings.Compare(a.Value, b.Value))
	})
	return FieldSelector{reqs: slices.Compact(reqs)}, nil
}

// selectorSpaces is the whitespace that may surround tokens of selectors.
const selectorSpaces = " \t\n\r"

// isFieldPath reports whether s is letters and digits in one or more
// dot-separated parts.
func isFieldPath(s string) bool {
	for part := range strings.SplitSeq(s, ".") {
		if part == "" {
			return false
		}
		for i := 0; i < len(part); i++ {
			if !isASCIIAlnum(part[i]) {
				return false
			}
		}
	}
	return true
}

// isFieldValue reports whether s is a valid field selector value.
func isFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' || c == ',' || c == '=' || c == '!' {
			return false
		}
	}
	return true
}

// Matches reports whether an object meets every requirement of the
// selector. get returns the value of one of the object's fields, and false
// if the object has no such field: such a field meets no "=" requirement
// and every "!=" requirement.
func (s FieldSelector) Matches(get func(field string) (string, bool)) bool {
	for _, r := range s.reqs {
		v, ok := get(r.Field)
		if (r.Op == "=") != (ok && v == r.Value) {
			return false
		}
	}
	return true
}

// Requirements returns a copy of the selector's requirements, in the order
// String prints them.
func (s FieldSelector) Requirements() []FieldRequirement {
	return slices.Clone(s.reqs)
}

// Empty reports whether the selector has no requirements and so selects
// everything.
func (s FieldSelector) Empty() bool { return len(s.reqs) == 0 }

// String returns the selector in canonical form, which ParseFieldSelector
// parses back to the same selector: the requirements sorted, "==" written
// "=", no whitespace ("metadata.name=web,status.phase!=Running"). The
// selector that selects everything is "".
func (s FieldSelector) String() string {
	var b strings.Builder
	for i, r := range s.reqs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(r.Field + r.Op + r.Value)
	}
	return b.String()
}

// Value returns the value that an "=" requirement of the selector demands
// of field, and whether there is one. Every object the selector matches has
// that value in that field, so a caller can use it to check that a selector
// stays within bounds (that a node lists only pods with its own
// spec.nodeName). If several "=" requirements name the field, it returns
// the first in String order; the selector then matches only objects that
// meet them all.
func (s FieldSelector) Value(field string) (string, bool) {
	for _, r := range s.reqs {
		if r.Field == field && r.Op == "=" {
			return r.Value, true
		}
	}
	return "", false
}
