// Package store keeps Paddock's objects in etcd: typed create, get, list,
// update, delete and watch, plus the embedded etcd member the server runs
// by default and snapshot save and restore.
//
// Keys are /paddock/<resource>/<tenant>/<name> for tenant-scoped kinds and
// /paddock/<resource>/<name> for cluster-scoped ones; values are the
// objects' JSON without metadata.resourceVersion, which is always the
// etcd modification revision of the key. Every update is a
// compare-and-swap on that revision.
//
// A Store is safe for concurrent use. It does not own the etcd client it is
// given; Watch goroutines end when their context ends.
package store

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultPrefix is the key prefix under which Paddock keeps its objects.
const DefaultPrefix = "/paddock/"

// Store is typed storage on etcd.
type Store struct {
	cli    *clientv3.Client
	prefix string
	now    func() time.Time
	fan    *fanout // nil unless ShareWatches was called
}

// New returns a Store on cli keeping objects under DefaultPrefix.
func New(cli *clientv3.Client) *Store {
	return &Store{cli: cli, prefix: DefaultPrefix, now: time.Now}
}

// Client returns the etcd client the store uses.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Key returns the etcd key of an object.
func (s *Store) Key(k *api.Kind, tenant, name string) string {
	if k.TenantScoped {
		return s.prefix + k.Resource + "/" + tenant + "/" + name
	}
	return s.prefix + k.Resource + "/" + name
}

// Prefix returns the key prefix of a kind's objects: in one tenant, or of
// every tenant when tenant is empty.
func (s *Store) Prefix(k *api.Kind, tenant string) string {
	if k.TenantScoped && tenant != "" {
		return s.prefix + k.Resource + "/" + tenant + "/"
	}
	return s.prefix + k.Resource + "/"
}

func (s *Store) keyOf(obj api.Object) (*api.Kind, string, error) {
	k, ok := api.KindOf(obj)
	if !ok {
		return nil, "", fmt.Errorf("store: unknown object type %T", obj)
	}
	m := obj.GetObjectMeta()
	if m.Name == "" || strings.Contains(m.Name, "/") || (k.TenantScoped && (m.Tenant == "" || strings.Contains(m.Tenant, "/"))) {
		return nil, "", errdefs.Field(errdefs.ErrInvalidArgument, "metadata.name", "an object needs a name (and a tenant when tenant-scoped) without '/'")
	}
	return k, s.Key(k, m.Tenant, m.Name), nil
}

// encode returns obj's stored form: its JSON without resourceVersion.
func encode(obj api.Object) ([]byte, error) {
	m := obj.GetObjectMeta()
	rv := m.ResourceVersion
	m.ResourceVersion = ""
	b, err := json.Marshal(obj)
	m.ResourceVersion = rv
	return b, err
}

// decode turns a stored value into an object with its resourceVersion.
func decode(k *api.Kind, kv *mvccpb.KeyValue) (api.Object, error) {
	obj, err := api.DecodeStored(k, kv.Value)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", kv.Key, err)
	}
	obj.GetObjectMeta().ResourceVersion = strconv.FormatInt(kv.ModRevision, 10)
	return obj, nil
}

// ParseResourceVersion parses a resourceVersion; "" is 0.
func ParseResourceVersion(rv string) (int64, error) {
	if rv == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(rv, 10, 64)
	if err != nil || n < 0 {
		return 0, errdefs.Field(errdefs.ErrBadRequest, "resourceVersion", fmt.Sprintf("invalid resourceVersion %q: want a non-negative integer from an earlier answer", rv))
	}
	return n, nil
}

// NewUID returns a random RFC 4122 version 4 UUID.
func NewUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// prepareCreate fills in the metadata the store owns on a new object.
func (s *Store) prepareCreate(obj api.Object) {
	m := obj.GetObjectMeta()
	if m.UID == "" {
		m.UID = NewUID()
	}
	if m.CreationTimestamp == nil {
		m.CreationTimestamp = api.NewTime(s.now())
	}
	if m.Generation == 0 {
		m.Generation = 1
	}
	m.ResourceVersion = ""
}

// Create stores a new object. It sets uid, creationTimestamp, generation 1
// (unless set) and resourceVersion, and fails with errdefs.ErrAlreadyExists
// when the name is taken.
func (s *Store) Create(ctx context.Context, obj api.Object) (api.Object, error) {
	k, key, err := s.keyOf(obj)
	if err != nil {
		return nil, err
	}
	s.prepareCreate(obj)
	val, err := encode(obj)
	if err != nil {
		return nil, err
	}
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val))).
		Commit()
	if err != nil {
		return nil, etcdError(err)
	}
	if !resp.Succeeded {
		return nil, alreadyExists(k, obj.GetObjectMeta().Tenant, obj.GetObjectMeta().Name)
	}
	obj.GetObjectMeta().ResourceVersion = strconv.FormatInt(resp.Header.Revision, 10)
	return obj, nil
}

func inTenant(k *api.Kind, tenant string) string {
	if k.TenantScoped {
		return fmt.Sprintf(" in tenant %q", tenant)
	}
	return ""
}

func alreadyExists(k *api.Kind, tenant, name string) error {
	return errdefs.New(errdefs.ErrAlreadyExists, fmt.Sprintf("%s %q already exists%s", k.Singular, name, inTenant(k, tenant)))
}

// NotFound returns the error for a missing object.
func NotFound(k *api.Kind, tenant, name string) error {
	return errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("%s %q not found%s", k.Singular, name, inTenant(k, tenant)))
}

// Get reads one object.
func (s *Store) Get(ctx context.Context, k *api.Kind, tenant, name string) (api.Object, error) {
	resp, err := s.cli.Get(ctx, s.Key(k, tenant, name))
	if err != nil {
		return nil, etcdError(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, NotFound(k, tenant, name)
	}
	return decode(k, resp.Kvs[0])
}

// Update replaces an object if its stored resourceVersion is still the one
// obj carries (compare-and-swap); a stale one fails with
// errdefs.ErrConflict, a missing object with errdefs.ErrNotFound.
func (s *Store) Update(ctx context.Context, obj api.Object) (api.Object, error) {
	k, key, err := s.keyOf(obj)
	if err != nil {
		return nil, err
	}
	m := obj.GetObjectMeta()
	rv, err := ParseResourceVersion(m.ResourceVersion)
	if err != nil {
		return nil, err
	}
	if rv == 0 {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "metadata.resourceVersion", "required for an update")
	}
	val, err := encode(obj)
	if err != nil {
		return nil, err
	}
	resp, err := s.guardedTxn(ctx, k, m.Tenant, m.Name, clientv3.Compare(clientv3.ModRevision(key), "=", rv), clientv3.OpPut(key, string(val)))
	if err != nil {
		return nil, err
	}
	m.ResourceVersion = strconv.FormatInt(resp.Header.Revision, 10)
	return obj, nil
}

// guardedTxn runs op on one object's key if cmp holds, and otherwise
// reports errdefs.ErrNotFound when the key is missing and
// errdefs.ErrConflict when it has moved on.
func (s *Store) guardedTxn(ctx context.Context, k *api.Kind, tenant, name string, cmp clientv3.Cmp, op clientv3.Op) (*clientv3.TxnResponse, error) {
	key := s.Key(k, tenant, name)
	resp, err := s.cli.Txn(ctx).If(cmp).Then(op).Else(clientv3.OpGet(key, clientv3.WithKeysOnly())).Commit()
	if err != nil {
		return nil, etcdError(err)
	}
	if !resp.Succeeded {
		if len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
			return nil, NotFound(k, tenant, name)
		}
		return nil, conflict(k, name)
	}
	return resp, nil
}

func conflict(k *api.Kind, name string) error {
	return errdefs.New(errdefs.ErrConflict, fmt.Sprintf("%s %q was changed by someone else (stale resourceVersion): read it again and retry", k.Singular, name))
}

// UpdateFunc computes the new object from the current one. It may modify
// and return cur. Returning an error aborts the update with that error.
type UpdateFunc func(cur api.Object) (api.Object, error)

// GuaranteedUpdate reads an object, applies fn and writes the result with
// compare-and-swap, retrying from a fresh read when someone else wrote in
// between. It retries for as long as ctx allows: a conflict means another
// writer's update of the object succeeded, so contention slows the loop
// down but cannot make it spin without progress, and a fixed bound would
// turn a few busy writers into spurious conflicts for callers that sent no
// resourceVersion.
func (s *Store) GuaranteedUpdate(ctx context.Context, k *api.Kind, tenant, name string, fn UpdateFunc) (api.Object, error) {
	for {
		cur, err := s.Get(ctx, k, tenant, name)
		if err != nil {
			return nil, err
		}
		rv := cur.GetObjectMeta().ResourceVersion
		next, err := fn(cur)
		if err != nil {
			return nil, err
		}
		m := next.GetObjectMeta()
		m.ResourceVersion = rv
		m.Name, m.Tenant = name, tenant
		out, err := s.Update(ctx, next)
		if errdefs.IsConflict(err) {
			continue // the next Get fails once ctx is done
		}
		return out, err
	}
}

// Delete removes an object and returns it as it was last stored. When rv
// is not zero the delete happens only if the object is still at that
// revision.
func (s *Store) Delete(ctx context.Context, k *api.Kind, tenant, name string, rv int64) (api.Object, error) {
	key := s.Key(k, tenant, name)
	var cmp clientv3.Cmp
	if rv != 0 {
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", rv)
	} else {
		cmp = clientv3.Compare(clientv3.CreateRevision(key), ">", 0)
	}
	resp, err := s.guardedTxn(ctx, k, tenant, name, cmp, clientv3.OpDelete(key, clientv3.WithPrevKV()))
	if err != nil {
		return nil, err
	}
	prev := resp.Responses[0].GetResponseDeleteRange().PrevKvs
	if len(prev) == 0 {
		return nil, NotFound(k, tenant, name)
	}
	obj, err := decode(k, prev[0])
	if err != nil {
		return nil, err
	}
	obj.GetObjectMeta().ResourceVersion = strconv.FormatInt(resp.Header.Revision, 10)
	return obj, nil
}

// Revision returns etcd's current revision.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	resp, err := s.cli.Get(ctx, s.prefix+"\x00revision", clientv3.WithCountOnly())
	if err != nil {
		return 0, etcdError(err)
	}
	return resp.Header.Revision, nil
}

// Compact discards the history before rev (the current revision when rev
// is 0). Watches and lists from a compacted revision then fail with
// errdefs.ErrGone. It returns the revision compacted to.
func (s *Store) Compact(ctx context.Context, rev int64) (int64, error) {
	if rev == 0 {
		var err error
		if rev, err = s.Revision(ctx); err != nil {
			return 0, err
		}
	}
	if _, err := s.cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
		return 0, etcdError(err)
	}
	if s.fan != nil {
		s.fan.compacted(rev)
	}
	return rev, nil
}

// Ready reports whether etcd answers a linearizable read.
func (s *Store) Ready(ctx context.Context) error {
	_, err := s.Revision(ctx)
	return err
}

// etcdError translates an etcd client error into an error class.
func etcdError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, rpctypes.ErrCompacted):
		return errdefs.New(errdefs.ErrGone, "the requested resourceVersion has been compacted: list again to get a current resourceVersion")
	case errors.Is(err, rpctypes.ErrFutureRev):
		return errdefs.New(errdefs.ErrGone, "the requested resourceVersion is newer than the store's: list again to get a current resourceVersion")
	case errors.Is(err, rpctypes.ErrRequestTooLarge):
		return errdefs.New(errdefs.ErrTooLarge, "object too large for the store")
	case errors.Is(err, rpctypes.ErrNoSpace):
		return errdefs.New(errdefs.ErrUnavailable, "the store is out of space (etcd alarm NOSPACE): compact and defragment it")
	}
	return fmt.Errorf("%w: etcd: %v", errdefs.ErrUnavailable, err)
}

// continueToken is the opaque "continue" of a paged list: the revision the
// list is read at and the key (relative to the list's prefix) to go on from.
type continueToken struct {
	Rev   int64  `json:"rv"`
	Start string `json:"start"`
}

func encodeContinue(rev int64, start string) string {
	b, _ := json.Marshal(continueToken{Rev: rev, Start: start})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeContinue(s string) (continueToken, error) {
	var t continueToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &t)
	}
	if err != nil || t.Rev <= 0 {
		return t, errdefs.Field(errdefs.ErrBadRequest, "continue", "invalid continue token: pass the metadata.continue of the previous page unchanged")
	}
	return t, nil
}

// stepKey is where a finished one-time step is recorded.
func (s *Store) stepKey(step string) string { return s.prefix + "\x00steps/" + step }

// StepDone reports whether a one-time step (such as creating the built-in
// runtime classes of a new cluster) was recorded as done.
func (s *Store) StepDone(ctx context.Context, step string) (bool, error) {
	resp, err := s.cli.Get(ctx, s.stepKey(step), clientv3.WithCountOnly())
	if err != nil {
		return false, etcdError(err)
	}
	return resp.Count > 0, nil
}

// MarkStepDone records a one-time step as done.
func (s *Store) MarkStepDone(ctx context.Context, step string) error {
	_, err := s.cli.Put(ctx, s.stepKey(step), s.now().UTC().Format(time.RFC3339))
	return etcdError(err)
}
