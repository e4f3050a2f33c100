package store

import (
	"strconv"
	"strings"
	"testing"

	"github.com/paddock-dev/paddock/core/api"
)

// benchConfigMap returns a ConfigMap holding 1 KiB of data.
func benchConfigMap(name string) *api.ConfigMap {
	cm := configMap("bench", name, map[string]string{"app": "bench"})
	cm.Data = map[string]string{"payload": strings.Repeat("x", 1024)}
	return cm
}

// benchValueSize is the stored size of a created benchConfigMap.
func benchValueSize(b *testing.B, s *Store) int {
	b.Helper()
	cm := benchConfigMap("cm-size")
	s.prepareCreate(cm)
	v, err := encode(cm)
	if err != nil {
		b.Fatal(err)
	}
	return len(v)
}

// BenchmarkCreate measures Create of a 1 KiB ConfigMap, each a new key.
// Compare with BenchmarkRawPut, etcd's own cost for a value of that size.
func BenchmarkCreate(b *testing.B) {
	s := newStore(b)
	ctx := b.Context()
	b.SetBytes(int64(benchValueSize(b, s)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.Create(ctx, benchConfigMap("cm-"+strconv.Itoa(i))); err != nil {
			b.Fatalf("Create() = %v", err)
		}
		i++
	}
}

// BenchmarkGet measures Get of a 1 KiB ConfigMap (a linearizable read and
// a JSON decode). Compare with BenchmarkRawGet.
func BenchmarkGet(b *testing.B) {
	s := newStore(b)
	ctx := b.Context()
	mustCreate(b, s, benchConfigMap("cm"))
	b.SetBytes(int64(benchValueSize(b, s)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Get(ctx, cmKind, "bench", "cm"); err != nil {
			b.Fatalf("Get() = %v", err)
		}
	}
}

// BenchmarkRawPut is the floor for BenchmarkCreate: a plain etcd Put of a
// value of the stored size, each to a new key.
func BenchmarkRawPut(b *testing.B) {
	s := newStore(b)
	ctx := b.Context()
	n := benchValueSize(b, s)
	val := strings.Repeat("x", n)
	b.SetBytes(int64(n))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.Client().Put(ctx, "/paddock/raw/bench/cm-"+strconv.Itoa(i), val); err != nil {
			b.Fatalf("Put() = %v", err)
		}
		i++
	}
}

// BenchmarkRawGet is the floor for BenchmarkGet: a plain etcd Get of a
// value of the stored size.
func BenchmarkRawGet(b *testing.B) {
	s := newStore(b)
	ctx := b.Context()
	n := benchValueSize(b, s)
	if _, err := s.Client().Put(ctx, "/paddock/raw/bench/cm", strings.Repeat("x", n)); err != nil {
		b.Fatalf("Put() = %v", err)
	}
	b.SetBytes(int64(n))
	b.ReportAllocs()
	for b.Loop() {
		resp, err := s.Client().Get(ctx, "/paddock/raw/bench/cm")
		if err != nil || len(resp.Kvs) != 1 {
			b.Fatalf("Get() = %v, %v", resp, err)
		}
	}
}
