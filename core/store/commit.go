package store

import (
	"context"
	"fmt"
	"strconv"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
	clientv3 "go.etcd.io/etcd/client/v3"
)

type opType int

const (
	opCreate opType = iota
	opUpdate
	opDelete
	opDeleteAll
	opCheckExists
)

// Op is one write of an atomic Commit.
type Op struct {
	typ    opType
	obj    api.Object
	k      *api.Kind
	tenant string
	name   string
	rv     int64
}

// OpCreate creates obj; it fails if the name is taken.
func OpCreate(obj api.Object) Op { return Op{typ: opCreate, obj: obj} }

// OpUpdate replaces obj if it is still at the resourceVersion it carries,
// which it must carry.
func OpUpdate(obj api.Object) Op { return Op{typ: opUpdate, obj: obj} }

// OpDelete deletes one object; when rv is not zero, only at that revision.
func OpDelete(k *api.Kind, tenant, name string, rv int64) Op {
	return Op{typ: opDelete, k: k, tenant: tenant, name: name, rv: rv}
}

// OpDeleteAll deletes every object of a tenant-scoped kind in a tenant, or
// of a cluster-scoped kind whose key is in the prefix; it has no
// precondition.
func OpDeleteAll(k *api.Kind, tenant string) Op {
	return Op{typ: opDeleteAll, k: k, tenant: tenant}
}

// OpCheckExists writes nothing; the commit fails with errdefs.ErrNotFound
// unless the object exists (a pod's tenant, say).
func OpCheckExists(k *api.Kind, tenant, name string) Op {
	return Op{typ: opCheckExists, k: k, tenant: tenant, name: name}
}

// Commit applies ops atomically: all of them or none. It returns the
// created and updated objects, in order, with their new resourceVersion.
// When a precondition fails it returns the error of the first op that
// failed (errdefs.ErrAlreadyExists, ErrNotFound or ErrConflict).
func (s *Store) Commit(ctx context.Context, ops ...Op) ([]api.Object, error) {
	var cmps []clientv3.Cmp
	var thens, elses []clientv3.Op
	keys := make([]string, len(ops))
	for i := range ops {
		op := &ops[i]
		switch op.typ {
		case opCreate, opUpdate:
			k, key, err := s.keyOf(op.obj)
			if err != nil {
				return nil, err
			}
			op.k, keys[i] = k, key
			m := op.obj.GetObjectMeta()
			op.tenant, op.name = m.Tenant, m.Name
			if op.typ == opCreate {
				s.prepareCreate(op.obj)
				cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
			} else {
				rv, err := ParseResourceVersion(m.ResourceVersion)
				if err != nil {
					return nil, err
				}
				if rv == 0 {
					// Without it the compare below (mod revision 0)
					// would hold only for a missing key: the update
					// would create the object.
					return nil, errdefs.Field(errdefs.ErrInvalidArgument, "metadata.resourceVersion", fmt.Sprintf("required for an update (%s %q)", op.k.Singular, m.Name))
				}
				op.rv = rv
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", rv))
			}
			val, err := encode(op.obj)
			if err != nil {
				return nil, err
			}
			thens = append(thens, clientv3.OpPut(key, string(val)))
		case opDelete:
			keys[i] = s.Key(op.k, op.tenant, op.name)
			if op.rv != 0 {
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(keys[i]), "=", op.rv))
			} else {
				cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(keys[i]), ">", 0))
			}
			thens = append(thens, clientv3.OpDelete(keys[i]))
		case opCheckExists:
			keys[i] = s.Key(op.k, op.tenant, op.name)
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(keys[i]), ">", 0))
		case opDeleteAll:
			if op.k.TenantScoped && op.tenant == "" {
				return nil, fmt.Errorf("store: deleting every %s needs a tenant; refusing to delete them in all tenants", op.k.Resource)
			}
			thens = append(thens, clientv3.OpDelete(s.Prefix(op.k, op.tenant), clientv3.WithPrefix()))
			continue
		}
		elses = append(elses, clientv3.OpGet(keys[i], clientv3.WithKeysOnly()))
	}
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(thens...).Else(elses...).Commit()
	if err != nil {
		return nil, etcdError(err)
	}
	if !resp.Succeeded {
		return nil, commitFailure(ops, resp)
	}
	rv := strconv.FormatInt(resp.Header.Revision, 10)
	var out []api.Object
	for _, op := range ops {
		if op.obj != nil {
			op.obj.GetObjectMeta().ResourceVersion = rv
			out = append(out, op.obj)
		}
	}
	return out, nil
}

// commitFailure finds the first op whose precondition failed, from the
// modification revisions the Else branch read.
func commitFailure(ops []Op, resp *clientv3.TxnResponse) error {
	j := 0
	for _, op := range ops {
		if op.typ == opDeleteAll {
			continue
		}
		kvs := resp.Responses[j].GetResponseRange().Kvs
		j++
		exists := len(kvs) > 0
		switch {
		case op.typ == opCreate && exists:
			return alreadyExists(op.k, op.tenant, op.name)
		case op.typ != opCreate && !exists:
			return NotFound(op.k, op.tenant, op.name)
		case op.typ != opCreate && op.rv != 0 && kvs[0].ModRevision != op.rv:
			return conflict(op.k, op.name)
		}
	}
	return fmt.Errorf("store: commit of %d ops failed a precondition that no longer fails; retry", len(ops))
}
