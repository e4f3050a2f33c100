package controller_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/controller"
	"github.com/paddock-dev/paddock/internal/testcluster"
)

// leaderOf returns who holds the controllers' lease.
func leaderOf(t *testing.T, c *client.Client) string {
	t.Helper()
	o, err := c.Get(context.Background(), leaseKind, "", controller.DefaultLeaseName)
	if err != nil {
		return ""
	}
	return o.(*api.Lease).Spec.HolderIdentity
}

// waitOneLeader waits until exactly one of ms leads and holds the lease.
func waitOneLeader(t *testing.T, c *client.Client, ms ...*manager) *manager {
	t.Helper()
	var leader *manager
	eventually(t, 30*time.Second, "one leader", func() (bool, string) {
		leader = nil
		n := 0
		for _, m := range ms {
			if m.isLeading() {
				leader, n = m, n+1
			}
		}
		holder := leaderOf(t, c)
		return n == 1 && holder == leader.identity, fmt.Sprintf("%d leading, lease held by %q", n, holder)
	})
	return leader
}

func TestLeaderElection(t *testing.T) {
	cl := testcluster.Start(t)
	a := startManager(t, cl.Admin, "a")
	b := startManager(t, cl.Admin, "b")
	leader := waitOneLeader(t, cl.Admin, a, b)
	follower := b
	if leader == b {
		follower = a
	}

	t.Run("only one leads", func(t *testing.T) {
		// Over several renewals the follower never leads.
		for end := time.Now().Add(4 * fastConfig(nil, "").RenewPeriod); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if a.isLeading() && b.isLeading() {
				t.Fatal("both managers lead at once")
			}
		}
		if started, _ := follower.history(); len(started) != 0 {
			t.Fatalf("follower %s led at %v", follower.identity, started)
		}
		if h := leaderOf(t, cl.Admin); h != leader.identity {
			t.Fatalf("lease held by %q, want %q", h, leader.identity)
		}
	})
	t.Run("the other takes over when the leader stops", func(t *testing.T) {
		stopped := time.Now()
		leader.stop()
		eventually(t, fastConfig(nil, "").LeaseDuration, "follower leads", func() (bool, string) {
			return follower.isLeading() && leaderOf(t, cl.Admin) == follower.identity, fmt.Sprintf("lease held by %q", leaderOf(t, cl.Admin))
		})
		t.Logf("took over %s after the leader stopped", time.Since(stopped).Round(time.Millisecond))
		o, err := cl.Admin.Get(context.Background(), leaseKind, "", controller.DefaultLeaseName)
		if err != nil {
			t.Fatal(err)
		}
		if n := o.(*api.Lease).Spec.LeaseTransitions; n != 1 {
			t.Errorf("leaseTransitions = %d, want 1", n)
		}
	})
}

func TestLeaderCutOffStepsDown(t *testing.T) {
	cl := testcluster.Start(t)
	px := startProxy(t, cl.AdminConfig.Server)
	conf := *cl.AdminConfig
	conf.Server = px.url
	viaProxy, err := client.New(&conf)
	if err != nil {
		t.Fatal(err)
	}
	a := startManager(t, viaProxy, "a")
	waitOneLeader(t, cl.Admin, a)
	b := startManager(t, cl.Admin, "b")

	cut := time.Now()
	px.cut()
	eventually(t, 30*time.Second, "b takes over from a that cannot reach the API server", func() (bool, string) {
		return b.isLeading(), fmt.Sprintf("a leading %v, lease held by %q", a.isLeading(), leaderOf(t, cl.Admin))
	})
	aStarted, aStopped := a.history()
	bStarted, _ := b.history()
	if len(aStopped) != 1 {
		t.Fatalf("a led %d times and stopped %d times, want it stopped once", len(aStarted), len(aStopped))
	}
	if !aStopped[0].Before(bStarted[0]) {
		t.Errorf("a stopped leading at %s, after b started at %s: two leaders at once", aStopped[0].Format(time.StampMilli), bStarted[0].Format(time.StampMilli))
	}
	cfg := fastConfig(nil, "")
	if d := aStopped[0].Sub(cut); d > cfg.RenewDeadline+cfg.RenewPeriod {
		t.Errorf("a stepped down %s after it was cut off, want within its renew deadline (%s) plus a renew period", d, cfg.RenewDeadline)
	}
}

// proxy forwards TCP connections to a server until cut.
type proxy struct {
	url   string
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, server string) *proxy {
	t.Helper()
	u, err := url.Parse(server)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, url: u.Scheme + "://" + ln.Addr().String()}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", u.Host)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); io.Copy(out, in); out.Close() }()
			go func() { defer p.wg.Done(); io.Copy(in, out); in.Close() }()
		}
	}()
	t.Cleanup(p.cut)
	return p
}

// cut closes the listener and every connection, and waits for the
// copying goroutines.
func (p *proxy) cut() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}
