package apiserver

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/core/store"
)

// deletePod deletes a pod. A pod running on a node is deleted
// gracefully: the first delete sets its deletionTimestamp and grace
// period and the node's agent, once the containers stopped, deletes it
// for good. A grace period of 0 (gracePeriodSeconds=0, `--force`), a pod
// not bound to a node or already finished, and the node's own delete of a
// terminating pod remove it at once, releasing its quota in the same
// transaction.
func (s *Server) deletePod(ctx context.Context, u *User, req *Request, rv int64) (api.Object, error) {
	grace, err := gracePeriod(req)
	if err != nil {
		return nil, err
	}
	lock := s.tenantLock(req.Tenant)
	lock.Lock()
	defer lock.Unlock()
	for attempt := 0; ; attempt++ {
		o, err := s.store.Get(ctx, podKind, req.Tenant, req.Name)
		if err != nil {
			return nil, err
		}
		p := o.(*api.Pod)
		prv, _ := store.ParseResourceVersion(p.Metadata.ResourceVersion)
		if rv != 0 && rv != prv {
			return nil, errdefs.New(errdefs.ErrConflict, fmt.Sprintf("pod %q was changed by someone else: read it again and retry", req.Name))
		}
		if graceful(u, p, grace) {
			if !beginGracefulDelete(p, grace) {
				return p, nil // already terminating, no sooner than asked
			}
			out, err := s.store.Update(ctx, p)
			if errdefs.IsConflict(err) && attempt < maxQuotaAttempts {
				continue
			}
			return out, err
		}
		ops := []store.Op{store.OpDelete(podKind, req.Tenant, req.Name, prv)}
		if !api.PodFinished(p) {
			to, err := s.store.Get(ctx, tenantKind, "", req.Tenant)
			if err == nil {
				t := to.(*api.Tenant)
				releasePod(t, p)
				ops = append(ops, store.OpUpdate(t))
			} else if !errdefs.IsNotFound(err) {
				return nil, err
			}
		}
		_, err = s.store.Commit(ctx, ops...)
		if errdefs.IsConflict(err) && attempt < maxQuotaAttempts {
			continue
		}
		if err != nil {
			return nil, err
		}
		return p, nil
	}
}

// gracePeriod is the request's gracePeriodSeconds, or nil.
func gracePeriod(req *Request) (*int64, error) {
	v := req.Query.Get("gracePeriodSeconds")
	if v == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return nil, errdefs.Field(errdefs.ErrBadRequest, "gracePeriodSeconds", fmt.Sprintf("%q: want a whole number of seconds, 0 or more", v))
	}
	return &n, nil
}

// graceful reports whether deleting p must wait for its node.
func graceful(u *User, p *api.Pod, grace *int64) bool {
	switch {
	case p.Spec.NodeName == "" || api.PodFinished(p):
		return false
	case grace != nil && *grace == 0:
		return false
	case u.Role == api.RoleNode && p.Metadata.DeletionTimestamp != nil:
		return false // the agent finished terminating it
	}
	return true
}

// beginGracefulDelete marks p terminating with grace (default: the pod's
// terminationGracePeriodSeconds), or shortens a deletion in progress. It
// reports whether p changed.
func beginGracefulDelete(p *api.Pod, grace *int64) bool {
	if grace == nil {
		g := int64(30)
		if p.Spec.TerminationGracePeriodSeconds != nil {
			g = *p.Spec.TerminationGracePeriodSeconds
		}
		grace = &g
	}
	m := &p.Metadata
	now := time.Now()
	if m.DeletionTimestamp != nil && m.DeletionGracePeriodSeconds != nil {
		end := m.DeletionTimestamp.Add(time.Duration(*m.DeletionGracePeriodSeconds) * time.Second)
		if !now.Add(time.Duration(*grace) * time.Second).Before(end) {
			return false
		}
	}
	m.DeletionTimestamp, m.DeletionGracePeriodSeconds = api.NewTime(now), grace
	return true
}
