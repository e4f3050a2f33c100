package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/paddock-dev/paddock/core/errdefs"
	"sigs.k8s.io/yaml"
)

// MaxObjectBytes bounds one encoded object, as the API server bounds a
// request body.
const MaxObjectBytes = 3 << 20

// Document is one object decoded from a manifest, with where it came from.
type Document struct {
	Object Object
	// Line is the 1-based line the document starts on in its source.
	Line int
}

// Decode decodes one object from YAML or JSON. It is strict: an unknown
// kind, apiVersion or field, a value of the wrong type or trailing data is
// an error of class errdefs.ErrBadRequest naming the field (or the line,
// for syntax errors).
func Decode(data []byte) (Object, error) {
	return DecodeAs(data, nil)
}

// DecodeAs decodes one object like Decode. When want is not nil, the
// object must be of that kind; an empty kind in data is taken to mean want.
func DecodeAs(data []byte, want *Kind) (Object, error) {
	if t := bytes.TrimSpace(data); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		if len(data) > MaxObjectBytes {
			return nil, errdefs.New(errdefs.ErrTooLarge, fmt.Sprintf("object is %d bytes; the limit is %d", len(data), MaxObjectBytes))
		}
		return decodeJSON(data, want)
	}
	js, err := toJSON(data, 0)
	if err != nil {
		return nil, err
	}
	return decodeJSON(js, want)
}

// DecodeDocuments decodes every object of a manifest: several YAML
// documents separated by "---" lines, a stream of JSON objects, a JSON
// array, or a "List" whose items are objects. Errors name the document's
// line and the field.
func DecodeDocuments(data []byte) ([]Document, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		return decodeJSONStream(data)
	}
	var docs []Document
	for _, chunk := range splitYAML(data) {
		js, err := toJSON(chunk.data, chunk.line-1)
		if err != nil {
			return nil, err
		}
		if bytes.Equal(js, []byte("null")) {
			continue // an empty document
		}
		objs, err := decodeMaybeList(js)
		if err != nil {
			return nil, fmt.Errorf("document at line %d: %w", chunk.line, err)
		}
		for _, o := range objs {
			docs = append(docs, Document{Object: o, Line: chunk.line})
		}
	}
	return docs, nil
}

func decodeJSONStream(data []byte) ([]Document, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var docs []Document
	for {
		start := dec.InputOffset()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return docs, nil
			}
			return nil, jsonSyntaxError(data, start, err)
		}
		line := lineAt(data, int(start)+leadingSpace(data[start:]))
		var items []json.RawMessage
		if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("[")) {
			if err := json.Unmarshal(raw, &items); err != nil {
				return nil, errdefs.New(errdefs.ErrBadRequest, fmt.Sprintf("line %d: %v", line, err))
			}
		} else {
			items = []json.RawMessage{raw}
		}
		for _, it := range items {
			objs, err := decodeMaybeList(it)
			if err != nil {
				return nil, fmt.Errorf("document at line %d: %w", line, err)
			}
			for _, o := range objs {
				docs = append(docs, Document{Object: o, Line: line})
			}
		}
	}
}

func leadingSpace(b []byte) int {
	return len(b) - len(bytes.TrimLeft(b, " \t\r\n"))
}

// decodeMaybeList decodes a JSON object that is either a kind of object or
// a List of them.
func decodeMaybeList(js []byte) ([]Object, error) {
	var head struct {
		Kind  string            `json:"kind"`
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return nil, errdefs.New(errdefs.ErrBadRequest, "want an object with apiVersion and kind")
	}
	if head.Kind != "List" {
		o, err := decodeJSON(js, nil)
		if err != nil {
			return nil, err
		}
		return []Object{o}, nil
	}
	objs := make([]Object, 0, len(head.Items))
	for i, it := range head.Items {
		o, err := decodeJSON(it, nil)
		if err != nil {
			return nil, prefixField(fmt.Sprintf("items[%d]", i), err)
		}
		objs = append(objs, o)
	}
	return objs, nil
}

// toJSON converts YAML (or JSON, which is YAML) to JSON. lineOffset is added
// to line numbers in syntax errors.
func toJSON(data []byte, lineOffset int) ([]byte, error) {
	if len(data) > MaxObjectBytes {
		return nil, errdefs.New(errdefs.ErrTooLarge, fmt.Sprintf("object is %d bytes; the limit is %d", len(data), MaxObjectBytes))
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, errdefs.New(errdefs.ErrBadRequest, yamlErrorMessage(err, lineOffset))
	}
	return js, nil
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// yamlErrorMessage makes a YAML library error readable and shifts its line
// numbers to the position in the whole file.
func yamlErrorMessage(err error, lineOffset int) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = yamlLine.ReplaceAllStringFunc(msg, func(m string) string {
		n, _ := strconv.Atoi(m[len("line "):])
		return "line " + strconv.Itoa(n+lineOffset)
	})
	if !strings.Contains(msg, "line ") {
		msg = fmt.Sprintf("line %d: %s", lineOffset+1, msg)
	}
	return "malformed YAML: " + msg
}

func jsonSyntaxError(data []byte, start int64, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return errdefs.New(errdefs.ErrBadRequest, fmt.Sprintf("malformed JSON: line %d: %s", lineAt(data, int(se.Offset)), se.Error()))
	}
	return errdefs.New(errdefs.ErrBadRequest, fmt.Sprintf("malformed JSON: line %d: %v", lineAt(data, int(start)), err))
}

func lineAt(data []byte, off int) int {
	if off > len(data) {
		off = len(data)
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}

type yamlChunk struct {
	data []byte
	line int
}

// splitYAML splits a YAML stream at document separators ("---" lines).
func splitYAML(data []byte) []yamlChunk {
	var chunks []yamlChunk
	lines := bytes.SplitAfter(data, []byte("\n"))
	var cur bytes.Buffer
	start := 1
	for i, l := range lines {
		t := bytes.TrimRight(l, " \t\r\n")
		if bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- ")) {
			chunks = append(chunks, yamlChunk{data: bytes.Clone(cur.Bytes()), line: start})
			cur.Reset()
			start = i + 2
			continue
		}
		if bytes.Equal(t, []byte("...")) {
			continue
		}
		cur.Write(l)
	}
	chunks = append(chunks, yamlChunk{data: cur.Bytes(), line: start})
	return chunks
}

// decodeJSON decodes one JSON object strictly.
func decodeJSON(js []byte, want *Kind) (Object, error) {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return nil, jsonSyntaxError(js, 0, err)
	}
	if dec.More() {
		return nil, errdefs.New(errdefs.ErrBadRequest, "malformed JSON: data after the object; send one object per request")
	}
	m, ok := generic.(map[string]any)
	if !ok {
		return nil, errdefs.New(errdefs.ErrBadRequest, fmt.Sprintf("want an object with apiVersion and kind, got %s", jsonTypeName(generic)))
	}
	av, _ := m["apiVersion"].(string)
	kindName, _ := m["kind"].(string)
	if _, present := m["apiVersion"]; present && av != Version {
		return nil, errdefs.Field(errdefs.ErrBadRequest, "apiVersion", fmt.Sprintf("unsupported apiVersion %q: want %s", fmtAny(m["apiVersion"]), Version))
	}
	var k *Kind
	switch {
	case kindName == "" && want != nil:
		k = want
	case kindName == "":
		return nil, errdefs.Field(errdefs.ErrBadRequest, "kind", "missing: want one of "+kindList())
	default:
		var found bool
		k, found = kindByName(kindName)
		if !found {
			return nil, errdefs.Field(errdefs.ErrBadRequest, "kind", fmt.Sprintf("unknown kind %q: want one of %s", kindName, kindList()))
		}
		if want != nil && k != want {
			return nil, errdefs.Field(errdefs.ErrBadRequest, "kind", fmt.Sprintf("kind %s does not belong here: this URL takes %s", kindName, want.Kind))
		}
	}
	obj := k.New()
	if err := checkValue(m, reflect.TypeOf(obj).Elem(), ""); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(js, obj); err != nil {
		return nil, errdefs.New(errdefs.ErrBadRequest, jsonErrorMessage(err))
	}
	*obj.GetTypeMeta() = TypeMeta{APIVersion: Version, Kind: k.Kind}
	return obj, nil
}

func kindByName(name string) (*Kind, bool) {
	for _, k := range Kinds {
		if k.Kind == name {
			return k, true
		}
	}
	return nil, false
}

func kindList() string {
	names := make([]string, len(Kinds))
	for i, k := range Kinds {
		names[i] = k.Kind
	}
	return strings.Join(names, ", ")
}

func jsonErrorMessage(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("%s: want %s, got %s", te.Field, te.Type, te.Value)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

var (
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	bytesType       = reflect.TypeFor[[]byte]()
)

// checkValue walks a generic JSON value against the Go type it will be
// decoded into and reports the first unknown field or wrongly typed value
// with its path.
func checkValue(v any, t reflect.Type, path string) error {
	if v == nil {
		return nil // null is the zero value of anything
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		raw, err := json.Marshal(v)
		if err != nil {
			return errdefs.Field(errdefs.ErrBadRequest, path, err.Error())
		}
		if err := reflect.New(t).Interface().(json.Unmarshaler).UnmarshalJSON(raw); err != nil {
			var fe *errdefs.Error
			if errors.As(err, &fe) {
				return errdefs.Field(errdefs.ErrBadRequest, path, fe.Message)
			}
			return errdefs.Field(errdefs.ErrBadRequest, path, err.Error())
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return checkValue(v, t.Elem(), path)
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return typeError(path, "an object", v)
		}
		fields := jsonFields(t)
		for key, val := range m {
			f, ok := fields[key]
			if !ok {
				if path == "" && (key == "apiVersion" || key == "kind") {
					continue
				}
				return errdefs.Field(errdefs.ErrBadRequest, joinPath(path, key), "unknown field; valid fields here: "+strings.Join(sortedKeys(fields), ", "))
			}
			if err := checkValue(val, f.Type, joinPath(path, key)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return typeError(path, "an object", v)
		}
		for key, val := range m {
			if err := checkValue(val, t.Elem(), path+"["+strconv.Quote(key)+"]"); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		if t == bytesType {
			s, ok := v.(string)
			if !ok {
				return typeError(path, "a base64 string", v)
			}
			if _, err := base64.StdEncoding.DecodeString(s); err != nil {
				return errdefs.Field(errdefs.ErrBadRequest, path, "want base64-encoded data (use stringData for plain text)")
			}
			return nil
		}
		a, ok := v.([]any)
		if !ok {
			return typeError(path, "a list", v)
		}
		for i, e := range a {
			if err := checkValue(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	case reflect.String:
		if _, ok := v.(string); !ok {
			return typeError(path, "a string", v)
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return typeError(path, "true or false", v)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			return typeError(path, "an integer", v)
		}
		i, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil || reflect.Zero(t).OverflowInt(i) {
			return errdefs.Field(errdefs.ErrBadRequest, path, fmt.Sprintf("want an integer that fits in %d bits, got %s", t.Bits(), n))
		}
	case reflect.Interface:
		return nil
	}
	return nil
}

// jsonFields maps the JSON names of a struct's fields (following inline
// embedded structs) to the fields.
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	fields := make(map[string]reflect.StructField, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && (name == "" || strings.Contains(opts, "inline")) && f.Type.Kind() == reflect.Struct {
			for k, v := range jsonFields(f.Type) {
				fields[k] = v
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f
	}
	return fields
}

func sortedKeys(m map[string]reflect.StructField) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func typeError(path, want string, got any) error {
	return errdefs.Field(errdefs.ErrBadRequest, path, fmt.Sprintf("want %s, got %s", want, jsonTypeName(got)))
}

func jsonTypeName(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("string %q", truncate(x, 40))
	case bool:
		return "boolean " + strconv.FormatBool(x)
	case json.Number:
		return "number " + x.String()
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func fmtAny(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return jsonTypeName(v)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// prefixField prepends prefix to the field path of a user-facing error.
func prefixField(prefix string, err error) error {
	var e *errdefs.Error
	if errors.As(err, &e) {
		return errdefs.Field(e.Class, joinPath(prefix, e.Field), e.Message)
	}
	return err
}

// fieldError is a bad-request error for decoders of single values; the
// walker in checkValue attaches the path.
func fieldError(field, message string) error {
	return errdefs.Field(errdefs.ErrBadRequest, field, message)
}

// Encode returns obj as JSON.
func Encode(obj Object) ([]byte, error) {
	return json.Marshal(obj)
}

// Clone returns a deep copy of obj.
func Clone[T Object](obj T) T {
	b, err := json.Marshal(obj)
	if err != nil {
		panic(fmt.Sprintf("api: cannot encode %T: %v", obj, err))
	}
	out := reflect.New(reflect.TypeOf(obj).Elem()).Interface().(T)
	if err := json.Unmarshal(b, out); err != nil {
		panic(fmt.Sprintf("api: cannot decode %T: %v", obj, err))
	}
	return out
}

// DecodeStored decodes an object the server itself encoded (from etcd):
// not strict, because it trusts its own output, and fast.
func DecodeStored(k *Kind, data []byte) (Object, error) {
	obj := k.New()
	if err := json.Unmarshal(data, obj); err != nil {
		return nil, fmt.Errorf("decode stored %s: %w", k.Kind, err)
	}
	return obj, nil
}

// DecodeList decodes a list answer of kind k.
func DecodeList(k *Kind, data []byte) (*List, error) {
	var raw struct {
		TypeMeta `json:",inline"`
		Metadata ListMeta          `json:"metadata"`
		Items    []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("decode %s list: %w", k.Kind, err)
	}
	l := &List{TypeMeta: raw.TypeMeta, Metadata: raw.Metadata, Items: make([]Object, 0, len(raw.Items))}
	for _, it := range raw.Items {
		o, err := DecodeStored(k, it)
		if err != nil {
			return nil, err
		}
		l.Items = append(l.Items, o)
	}
	return l, nil
}

// DecodeWatchEvent decodes one line of a watch stream of kind k.
func DecodeWatchEvent(k *Kind, line []byte) (WatchEvent, error) {
	var raw struct {
		Type   EventType       `json:"type"`
		Object json.RawMessage `json:"object"`
	}
	if err := json.Unmarshal(line, &raw); err != nil {
		return WatchEvent{}, fmt.Errorf("decode watch event: %w", err)
	}
	ev := WatchEvent{Type: raw.Type}
	if raw.Type == Error {
		st := &Status{}
		if err := json.Unmarshal(raw.Object, st); err != nil {
			return WatchEvent{}, fmt.Errorf("decode watch error: %w", err)
		}
		ev.Object = st
		return ev, nil
	}
	o, err := DecodeStored(k, raw.Object)
	if err != nil {
		return WatchEvent{}, err
	}
	ev.Object = o
	return ev, nil
}
