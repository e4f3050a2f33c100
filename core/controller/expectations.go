package controller

import (
	"sync"
	"time"
)

// expectationsTTL bounds how long a controller waits to see its own
// writes before it trusts its informers again (a lost event must not
// wedge an object).
const expectationsTTL = time.Minute

// expectations remember, per owner key, the pods a controller created or
// deleted and has not yet seen come or go in its informer. While any are
// outstanding the controller does not scale again, so that a stale local
// copy never makes it create or delete twice.
type expectations struct {
	mu  sync.Mutex
	m   map[string]*expected
	now func() time.Time
}

type expected struct {
	adds int
	dels map[string]bool // pod names
	at   time.Time
}

func newExpectations() *expectations {
	return &expectations{m: map[string]*expected{}, now: time.Now}
}

func (e *expectations) get(key string) *expected {
	x := e.m[key]
	if x == nil {
		x = &expected{dels: map[string]bool{}}
		e.m[key] = x
	}
	x.at = e.now()
	return x
}

// expectAdds records that n pods are about to be created for key.
func (e *expectations) expectAdds(key string, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.get(key).adds += n
}

// expectDelete records that the pod name is about to be deleted for key.
func (e *expectations) expectDelete(key, name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.get(key).dels[name] = true
}

// observeAdd records that a pod of key was seen created (or that a
// create failed).
func (e *expectations) observeAdd(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x := e.m[key]; x != nil && x.adds > 0 {
		x.adds--
	}
}

// observeDelete records that the pod name of key was seen deleted or
// terminating (or that its delete failed).
func (e *expectations) observeDelete(key, name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x := e.m[key]; x != nil {
		delete(x.dels, name)
	}
}

// satisfied reports whether key has nothing outstanding (or waited too
// long for it).
func (e *expectations) satisfied(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := e.m[key]
	if x == nil || (x.adds <= 0 && len(x.dels) == 0) || e.now().Sub(x.at) > expectationsTTL {
		delete(e.m, key)
		return true
	}
	return false
}

// forget drops what key expected (its owner is gone).
func (e *expectations) forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, key)
}
