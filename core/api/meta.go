package api

import "time"

// Version is the API group and version every object carries.
const Version = "paddock.dev/v1"

// TypeMeta says what an object is.
type TypeMeta struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`
}

// ObjectMeta is the metadata every object carries.
type ObjectMeta struct {
	Name string `json:"name,omitempty"`
	// Tenant is the tenant that owns a tenant-scoped object; empty for
	// cluster-scoped kinds.
	Tenant string `json:"tenant,omitempty"`
	UID    string `json:"uid,omitempty"`
	// ResourceVersion is the etcd revision at which the object last
	// changed. Updates carrying it are compare-and-swap.
	ResourceVersion string `json:"resourceVersion,omitempty"`
	// Generation counts changes to the spec, starting at 1.
	Generation        int64             `json:"generation,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	OwnerReferences   []OwnerReference  `json:"ownerReferences,omitempty"`
	CreationTimestamp *Time             `json:"creationTimestamp,omitempty"`
	// DeletionTimestamp is set when a graceful deletion began: a pod
	// bound to a node is removed once its agent stopped its containers,
	// within DeletionGracePeriodSeconds.
	DeletionTimestamp          *Time  `json:"deletionTimestamp,omitempty"`
	DeletionGracePeriodSeconds *int64 `json:"deletionGracePeriodSeconds,omitempty"`
}

// OwnerReference points at the object that owns this one (a ReplicaSet owns
// its pods); owned objects are collected when their owner is gone.
type OwnerReference struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	UID        string `json:"uid"`
	Controller bool   `json:"controller,omitempty"`
}

// Time is a timestamp serialised as RFC 3339 with second precision in UTC,
// as Kubernetes does.
type Time struct{ time.Time }

// NewTime returns t truncated to seconds, in UTC.
func NewTime(t time.Time) *Time { return &Time{t.UTC().Truncate(time.Second)} }

// MarshalJSON implements json.Marshaler.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return []byte(`"` + t.UTC().Format(time.RFC3339) + `"`), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *Time) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		t.Time = time.Time{}
		return nil
	}
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return fieldError("", "want an RFC 3339 timestamp such as \"2026-01-02T15:04:05Z\"")
	}
	v, err := time.Parse(time.RFC3339, s[1:len(s)-1])
	if err != nil {
		return fieldError("", "want an RFC 3339 timestamp such as \"2026-01-02T15:04:05Z\"")
	}
	t.Time = v.UTC()
	return nil
}

// Object is implemented by every resource kind.
type Object interface {
	GetTypeMeta() *TypeMeta
	GetObjectMeta() *ObjectMeta
}

// GetTypeMeta implements Object.
func (t *TypeMeta) GetTypeMeta() *TypeMeta { return t }

// GetObjectMeta implements Object.
func (m *ObjectMeta) GetObjectMeta() *ObjectMeta { return m }

// ListMeta is the metadata of a list: the revision it was read at and the
// token for the next page.
type ListMeta struct {
	ResourceVersion string `json:"resourceVersion,omitempty"`
	Continue        string `json:"continue,omitempty"`
	// RemainingItemCount is set when a page was cut by limit, when known.
	RemainingItemCount *int64 `json:"remainingItemCount,omitempty"`
}

// List is a page of objects of one kind, as the API returns it.
// Items is decoded according to the list's kind (PodList holds Pods).
type List struct {
	TypeMeta `json:",inline"`
	Metadata ListMeta `json:"metadata"`
	Items    []Object `json:"items"`
}

// EventType is the type of a watch event.
type EventType string

// Watch event types.
const (
	Added    EventType = "ADDED"
	Modified EventType = "MODIFIED"
	Deleted  EventType = "DELETED"
	Bookmark EventType = "BOOKMARK"
	Error    EventType = "ERROR"
)

// WatchEvent is one line of a watch stream. For ERROR events Object is a
// Status.
type WatchEvent struct {
	Type   EventType `json:"type"`
	Object Object    `json:"object"`
	// Encoded, when set by the producer, is Object's JSON, so that an
	// event shared by many watchers is encoded once. It is never sent.
	Encoded []byte `json:"-"`
}

// Status is the body of every error answer and of ERROR watch events.
type Status struct {
	TypeMeta `json:",inline"`
	Code     int    `json:"code"`
	Reason   string `json:"reason"`
	Message  string `json:"message"`
	// Field names the field the error is about, when there is one.
	Field string `json:"field,omitempty"`
	// Metadata is unused; it lets Status satisfy Object.
	Metadata ObjectMeta `json:"metadata,omitzero"`
}

// GetObjectMeta implements Object.
func (s *Status) GetObjectMeta() *ObjectMeta { return &s.Metadata }
