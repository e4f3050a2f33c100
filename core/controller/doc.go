// Package controller holds Paddock's controllers and the small framework
// they are built on. Controllers reach the control plane only through
// core/client, like every other component.
//
// # Framework
//
// A Controller is a workqueue of keys ("tenant/name", or "name" for
// cluster-scoped objects) fed by informer handlers, N workers and a
// Reconcile(ctx, key) function. Reconcile reads the current state from
// the informers' local copies (and, before anything destructive, from the
// API server), makes the world match, and returns an error to be retried
// with per-key back-off. Controllers are level-based: Reconcile never acts
// on an event's payload, only on the state it reads, and is safe to run
// twice or on two processes at once (every write is compare-and-swap on
// resourceVersion, or an idempotent create or delete).
//
// Informers is the shared informer factory of one process: each kind is
// listed and watched once, whatever the number of controllers that read
// it.
//
// # Leader election
//
// Several servers may run the controllers against one cluster; only one
// acts at a time. They compete for a Lease object ("paddock-controllers")
// through the API with compare-and-swap: the holder renews it every
// RenewPeriod (5 s); a candidate takes it once it has not seen it renewed
// for LeaseDuration (15 s), measured on its own clock from when it last
// saw the lease change, so clock skew between servers does not matter.
// A leader that has not renewed within RenewDeadline (10 s) stops its
// controllers (it cancels their context and waits for them) before anyone
// else may take over. A leader that stops cleanly releases the lease so
// that another server takes over at once.
//
// # Controllers
//
//   - Scheduler: binds pending pods to nodes through the pods/binding
//     subresource, with core/scheduler's decisions; writes PodScheduled=False
//     with the reasons for pods no node can run and retries them when the
//     cluster changes (see scheduling.go). RunScheduler runs it alone,
//     without leader election, for benchmarks.
//   - ReplicaSet: keeps spec.replicas pods of a template (see replicaset.go).
//   - Deployment: rolls templates out through ReplicaSets, one per template
//     hash (see deployment.go).
//   - Garbage collector: deletes pods and replica sets whose controlling
//     owner is gone (see gc.go).
//   - Node lifecycle: marks nodes whose agent stopped renewing its lease
//     Ready=Unknown and, after a timeout, deletes their pods so that their
//     replica sets replace them elsewhere (see nodelifecycle.go).
//
// Tenant quota usage (Tenant.status.used) needs no controller: the API
// server keeps it exact in the same transaction that creates, finishes or
// removes a pod.
//
// Run(ctx, Config) runs leader election and, while leading, all of the
// above; it returns once every goroutine it started has exited.
package controller
