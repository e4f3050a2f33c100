package store

import (
	"context"
	"strconv"

	"github.com/paddock-dev/paddock/core/api"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ListOptions narrows and pages a list.
type ListOptions struct {
	Labels api.Selector
	Fields api.FieldSelector
	// Limit caps the number of items; 0 means all. A cut list carries a
	// continue token.
	Limit int64
	// Continue is the token from the previous page.
	Continue string
}

// pageSize is how many keys one etcd range reads while filtering.
const pageSize = 500

// List returns the objects of a kind in a tenant (every tenant when tenant
// is empty) that match the selectors. All pages of one list are read at the
// same revision; a continue token whose revision was compacted fails with
// errdefs.ErrGone.
func (s *Store) List(ctx context.Context, k *api.Kind, tenant string, opts ListOptions) (*api.List, error) {
	prefix := s.Prefix(k, tenant)
	end := clientv3.GetPrefixRangeEnd(prefix)
	start := prefix
	var rev int64
	if opts.Continue != "" {
		t, err := decodeContinue(opts.Continue)
		if err != nil {
			return nil, err
		}
		// The start key is relative, so a token can never reach outside
		// the prefix (another tenant's objects).
		start, rev = prefix+t.Start, t.Rev
	}
	filtered := !opts.Labels.Empty() || !opts.Fields.Empty()
	list := &api.List{TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: k.Kind + "List"}, Items: []api.Object{}}
	for {
		want := int64(pageSize)
		if opts.Limit > 0 && !filtered {
			want = opts.Limit - int64(len(list.Items)) + 1 // one more tells whether there is a next page
		}
		ops := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(want)}
		if rev > 0 {
			ops = append(ops, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, start, ops...)
		if err != nil {
			return nil, etcdError(err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for i, kv := range resp.Kvs {
			if opts.Limit > 0 && int64(len(list.Items)) == opts.Limit {
				// Full: what is left starts at this key.
				list.Metadata.Continue = encodeContinue(rev, string(kv.Key[len(prefix):]))
				if !filtered {
					remaining := resp.Count - int64(i)
					list.Metadata.RemainingItemCount = &remaining
				}
				list.Metadata.ResourceVersion = strconv.FormatInt(rev, 10)
				return list, nil
			}
			obj, err := decode(k, kv)
			if err != nil {
				return nil, err
			}
			if filtered && !matches(k, obj, opts.Labels, opts.Fields) {
				continue
			}
			list.Items = append(list.Items, obj)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	list.Metadata.ResourceVersion = strconv.FormatInt(rev, 10)
	return list, nil
}

// matches reports whether obj is selected by the label and field selectors.
func matches(k *api.Kind, obj api.Object, labels api.Selector, fields api.FieldSelector) bool {
	if !labels.Matches(obj.GetObjectMeta().Labels) {
		return false
	}
	if fields.Empty() {
		return true
	}
	f := k.Fields(obj)
	return fields.Matches(func(name string) (string, bool) {
		v, ok := f[name]
		return v, ok
	})
}
