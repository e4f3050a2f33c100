// Package scheduler decides where pods run: it filters the nodes that can
// run a pod, scores the ones that can, and picks the best. It is pure
// placement over an in-memory view of the cluster: it does no I/O, talks to
// no API and starts no goroutines. The loop that watches pods and nodes
// through the API server and writes bindings lives elsewhere and drives
// this package.
//
// # Pieces
//
// A Cache is the incremental view of the cluster the decisions are made
// over. The loop feeds it watch events (AddNode, UpdateNode, RemoveNode,
// AddPod, UpdatePod, RemovePod). Only pods bound to a node and not finished
// count against the node. A decision counts as soon as the loop calls
// Assume, before the binding is written, so the next decision sees it; the
// watch event of the bound pod then confirms it, and Forget undoes it when
// the binding fails. The cache keeps, per node, the requested cpu, memory
// and pod count, the host ports in use and the number of pods of each
// owner (a pod's controller, or its labels when it has no owner), so that a
// decision never walks the pods.
//
// A Scheduler runs a Profile of filter plugins and score plugins over a
// Cache. The default profile has the filters NodeReady, NodeResourcesFit,
// TenantNodeSelector, NodeSelector, TaintToleration, RuntimeClass and
// HostPorts and the scores LeastAllocated, BalancedAllocation,
// ReplicaSpread and TaintToleration. A Config, decoded from JSON by
// DecodeConfig, sets score weights and sampling.
//
// Schedule returns the chosen node, or an *Unschedulable error whose
// message counts every node's reasons, such as
//
//	0/3 nodes are available: 2 insufficient memory, 1 no runtime class gvisor.
//
// and which carries each node's verdict for describe. The loop writes the
// message into the pod's PodScheduled condition (Unschedulable.Condition)
// and retries the pod when the cache has changed: Cache.Generation moves
// on every change, Cache.RetryGeneration only on those that can make room
// (a node added or updated, a pod removed, finished, moved or forgotten),
// not on every decision's assumption.
//
// A loop around this package reads:
//
//	cache := scheduler.NewCache()
//	sched, err := scheduler.New(cache, scheduler.DefaultProfile(), cfg)
//	// watch events: cache.AddNode / UpdateNode / RemoveNode, AddPod / UpdatePod / RemovePod
//	res, err := sched.Schedule(pod, tenant)
//	cache.Assume(pod, res.Node)
//	if bind(pod, res.Node) fails { cache.Forget(pod) }
//
// # Filters
//
// Filters run in the profile's order and a node's verdict is the first
// filter that rejects it (as in Kubernetes), so the counts in the message
// add up to the number of nodes, except that NodeResourcesFit names every
// resource that is short ("insufficient cpu" and "insufficient memory").
// Plugins, filters and scores alike, take a batch of nodes per call, so a
// decision costs one call per plugin and not one per plugin and node; a
// plugin that has nothing to say about a pod (no host ports, no node
// selector) says so once through Skipper and is not called.
//
// # Scores and ties
//
// Every score plugin gives a feasible node 0 to MaxNodeScore; the node's
// score is the sum of the plugins' scores times their weights. Scores count
// a container that requests no cpu or memory as requesting 100m and 200Mi
// (as Kubernetes does), so that best-effort pods spread; fitting counts
// requests as they are, and a pod that requests nothing fits any node with
// room for one more pod. Among nodes
// with the best score the scheduler picks the first in the order it
// examined them, so a decision is a deterministic function of the cache
// and the sequence of earlier calls.
//
// # Sampling
//
// On large clusters the scheduler stops filtering once it has found enough
// feasible nodes and scores only those, as Kubernetes'
// percentageOfNodesToScore does. With Config.PercentageOfNodesToScore 0
// (the default) the share is adaptive: 50% minus 1% per 125 nodes, at least
// 5%; a set percentage (1-100) is used as is. Either way at least
// Config.MinFeasibleNodesToFind nodes (default 100) are looked for, and a
// cluster smaller than that is examined whole. The nodes are kept sorted by
// name and each decision starts where the previous one stopped, so that
// over successive pods every node is looked at; there is no randomness.
// A pod no node can run is always checked against every node, so its
// message covers the whole cluster.
//
// # Concurrency
//
// A Cache is safe for concurrent use: its methods take its lock. Schedule
// holds the cache's lock for the whole decision, so a decision sees one
// consistent state, and serialises calls on the same Scheduler. The
// Scheduler's own state (where sampling resumes, scratch buffers) is
// guarded by its lock.
package scheduler
