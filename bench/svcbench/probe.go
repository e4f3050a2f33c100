package svcbench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/paddock-dev/paddock/internal/netns"
)

// probeTimeout bounds one wait for a probe's outcome.
const probeTimeout = 10 * time.Second

// attemptTimeout bounds one connection attempt; a refused one ends in
// well under a millisecond.
const attemptTimeout = time.Second

// A prober connects from the client namespace, on a thread locked in it,
// so that a probe costs no namespace switch.
type prober struct {
	reqs chan func()
	done chan error
}

func newProber(ns string) (*prober, error) {
	p := &prober{reqs: make(chan func()), done: make(chan error, 1)}
	started := make(chan struct{})
	go func() {
		p.done <- netns.Do(ns, func() error {
			close(started)
			for fn := range p.reqs {
				fn()
			}
			return nil
		})
	}()
	select {
	case <-started:
		return p, nil
	case err := <-p.done:
		return nil, fmt.Errorf("prober: %w", err)
	}
}

// do runs fn on the prober's thread.
func (p *prober) do(fn func()) {
	done := make(chan struct{})
	p.reqs <- func() { fn(); close(done) }
	<-done
}

func (p *prober) close() {
	close(p.reqs)
	<-p.done
}

func dial(addr netip.AddrPort) error {
	c, err := net.DialTimeout("tcp4", addr.String(), attemptTimeout)
	if err == nil {
		c.Close()
	}
	return err
}

// untilConnected connects to addr in a tight loop until a connection
// succeeds, and returns when it did. Attempts must fail fast (refused).
func (p *prober) untilConnected(addr netip.AddrPort, timeout time.Duration) (at time.Time, err error) {
	p.do(func() {
		deadline := time.Now().Add(timeout)
		for {
			e := dial(addr)
			at = time.Now()
			if e == nil {
				return
			}
			if !errors.Is(e, syscall.ECONNREFUSED) {
				err = fmt.Errorf("connect to %s: %w (want refused until the change is in)", addr, e)
				return
			}
			if at.After(deadline) {
				err = fmt.Errorf("connect to %s: still refused after %v", addr, timeout)
				return
			}
		}
	})
	return at, err
}

// untilRefused connects to addr until a connection is refused: the
// change before the timed one may take a while to arrive (through the
// API) and, until it does, connections may succeed or fail otherwise.
func (p *prober) untilRefused(addr netip.AddrPort, timeout time.Duration) (err error) {
	p.do(func() {
		deadline := time.Now().Add(timeout)
		for {
			e := dial(addr)
			if errors.Is(e, syscall.ECONNREFUSED) {
				return
			}
			if time.Now().After(deadline) {
				err = fmt.Errorf("connect to %s: not refused within %v (last: %v)", addr, timeout, e)
				return
			}
		}
	})
	return err
}

// connectTimes times n connections to each of addrs, in turn (so that
// they share the machine's noise), each from connect to established;
// out[i] are addrs[i]'s.
func (p *prober) connectTimes(addrs []netip.AddrPort, n int) (out [][]time.Duration, err error) {
	out = make([][]time.Duration, len(addrs))
	p.do(func() {
		for range n {
			for i, addr := range addrs {
				start := time.Now()
				c, e := net.DialTimeout("tcp4", addr.String(), attemptTimeout)
				d := time.Since(start)
				if e != nil {
					err = e
					return
				}
				c.Close()
				out[i] = append(out[i], d)
			}
		}
	})
	return out, err
}

// floor times n inserts of one DNAT rule for floorVIP, by netlink into a
// table of its own, each until the first connection through it; the rule
// is removed (untimed) before the next insert.
func (b *bed) floor(ctx context.Context, n int) (out []time.Duration, err error) {
	ns, err := os.Open(b.topo.Node)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns.Fd())), nftables.AsLasting())
	if err != nil {
		return nil, err
	}
	defer conn.CloseLasting()
	t := conn.AddTable(&nftables.Table{Name: floorTable, Family: nftables.TableFamilyIPv4})
	policy := nftables.ChainPolicyAccept
	ch := conn.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(*nftables.ChainPriorityNATDest - 10), Policy: &policy})
	if err := conn.Flush(); err != nil {
		return nil, err
	}
	defer func() {
		conn.DelTable(t)
		err = errors.Join(err, conn.Flush())
	}()
	vip := floorVIP.Addr().As4()
	for i := range n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := b.probe.untilRefused(floorVIP, probeTimeout); err != nil {
			return nil, fmt.Errorf("insert %d: before it: %w", i, err)
		}
		to := b.live[i%len(b.live)].As4()
		start := time.Now()
		conn.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: vip[:]},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, byte(floorVIP.Port())}},
			&expr.Immediate{Register: 1, Data: to[:]},
			&expr.Immediate{Register: 2, Data: []byte{byte(openPort >> 8), byte(openPort & 0xff)}},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
		}})
		if err := conn.Flush(); err != nil {
			return nil, err
		}
		ok, err := b.probe.untilConnected(floorVIP, probeTimeout)
		if err != nil {
			return nil, fmt.Errorf("insert %d: %w", i, err)
		}
		out = append(out, ok.Sub(start))
		conn.FlushChain(ch)
		if err := conn.Flush(); err != nil {
			return nil, err
		}
	}
	return out, nil
}
