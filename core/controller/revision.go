package controller

import (
	"bytes"
	"cmp"
	"encoding/json"
	"hash/fnv"
	"slices"
	"strconv"

	"github.com/paddock-dev/paddock/core/api"
)

// RevisionAnnotation holds a ReplicaSet's revision among its
// deployment's ReplicaSets: 1 for the first template, one more for each
// template rolled out since (a rollback to an old template gives its
// ReplicaSet the next revision).
const RevisionAnnotation = "paddock.dev/revision"

// TemplateHashLabel is the label of a deployment's ReplicaSets and pods
// that holds the hash of their template; it keeps the ReplicaSets'
// selectors apart.
const TemplateHashLabel = "pod-template-hash"

// TemplateHash returns the hash of a pod template that names a
// deployment's ReplicaSet (ten characters, DNS-safe). The
// pod-template-hash label is left out of it.
func TemplateHash(t *api.PodTemplateSpec) string {
	h := fnv.New64a()
	h.Write(templateJSON(t))
	n := h.Sum64()
	b := make([]byte, 10)
	for i := range b {
		b[i] = suffixAlphabet[n%uint64(len(suffixAlphabet))]
		n /= uint64(len(suffixAlphabet))
	}
	return string(b)
}

// TemplatesEqual reports whether two pod templates are the same but for
// the pod-template-hash label.
func TemplatesEqual(a, b *api.PodTemplateSpec) bool {
	return bytes.Equal(templateJSON(a), templateJSON(b))
}

// WithoutHash returns a copy of t without the pod-template-hash label,
// as a deployment's template holds it.
func WithoutHash(t *api.PodTemplateSpec) api.PodTemplateSpec {
	b, _ := json.Marshal(t)
	var out api.PodTemplateSpec
	json.Unmarshal(b, &out)
	delete(out.Metadata.Labels, TemplateHashLabel)
	if len(out.Metadata.Labels) == 0 {
		out.Metadata.Labels = nil
	}
	return out
}

func templateJSON(t *api.PodTemplateSpec) []byte {
	c := WithoutHash(t)
	b, _ := json.Marshal(&c)
	return b
}

// Revision returns rs's revision (0 when it has none).
func Revision(rs *api.ReplicaSet) int64 {
	n, err := strconv.ParseInt(rs.Metadata.Annotations[RevisionAnnotation], 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// SortByRevision sorts replica sets oldest revision first.
func SortByRevision(rss []*api.ReplicaSet) {
	slices.SortStableFunc(rss, func(a, b *api.ReplicaSet) int {
		if c := cmp.Compare(Revision(a), Revision(b)); c != 0 {
			return c
		}
		return timeOf(a.Metadata.CreationTimestamp).Compare(timeOf(b.Metadata.CreationTimestamp))
	})
}
