package netbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paddock-dev/paddock/internal/netns"
)

// bufSize is the size of the senders' writes and the receivers' reads.
const bufSize = 128 << 10

// connectTimeout bounds the wait for a datapath to carry a first
// connection.
const connectTimeout = 10 * time.Second

// drainTimeout bounds a workload's end: senders' last writes, receivers'
// last reads, a stalled round trip.
const drainTimeout = 30 * time.Second

// conns is a workload's connections: the listener in b, the dialled ends
// from a and the accepted ends in b. Everything is closed when ctx ends.
type conns struct {
	mu       sync.Mutex
	closed   bool
	ln       net.Listener
	dialled  []net.Conn
	accepted []net.Conn
	stop     func() bool // stops the close on ctx's end
}

// connect opens n TCP connections from p.a to p.b.
func connect(ctx context.Context, p *pair, n int) (c *conns, err error) {
	c = &conns{}
	c.stop = context.AfterFunc(ctx, c.closeAll)
	defer func() {
		if err != nil {
			c.close()
			c = nil
		}
	}()
	var ln net.Listener
	err = netns.Do(p.b, func() error {
		var err error
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(p.addrB, 0).String())
		return err
	})
	if err != nil {
		return c, fmt.Errorf("listen in pod B: %w", err)
	}
	c.keep(ln, func() { c.ln = ln })
	accepted := make(chan error, 1)
	go func() {
		for range n {
			conn, err := ln.Accept()
			if err != nil {
				accepted <- err
				return
			}
			c.keep(conn, func() { c.accepted = append(c.accepted, conn) })
		}
		accepted <- nil
	}()
	to := ln.Addr().String()
	err = netns.Do(p.a, func() error {
		for range n {
			conn, err := dialUntil(ctx, to, time.Now().Add(connectTimeout))
			if err != nil {
				return err
			}
			c.keep(conn, func() { c.dialled = append(c.dialled, conn) })
		}
		return nil
	})
	if err != nil {
		ln.Close() // ends the accepting goroutine
		<-accepted
		return c, fmt.Errorf("connect from pod A: %w", err)
	}
	if err := <-accepted; err != nil {
		return c, fmt.Errorf("accept in pod B: %w", err)
	}
	if c.isClosed() {
		return c, ctx.Err()
	}
	return c, nil
}

// keep records x with set, or closes it at once when everything has been
// closed already.
func (c *conns) keep(x io.Closer, set func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		x.Close()
		return
	}
	set()
}

func (c *conns) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// dialUntil connects to addr, trying again until deadline: a datapath
// just made may drop the first packets.
func dialUntil(ctx context.Context, addr string, deadline time.Time) (net.Conn, error) {
	d := net.Dialer{Timeout: time.Second}
	for {
		conn, err := d.DialContext(ctx, "tcp4", addr)
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return conn, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (c *conns) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.ln != nil {
		c.ln.Close()
	}
	for _, conn := range c.dialled {
		conn.Close()
	}
	for _, conn := range c.accepted {
		conn.Close()
	}
}

// close closes everything and stops watching ctx.
func (c *conns) close() {
	c.stop()
	c.closeAll()
}

// throughput runs n streams from p.a to p.b for warmup and then duration,
// and returns the Gbit/s received in the measured window.
func throughput(ctx context.Context, p *pair, n int, warmup, duration time.Duration) (float64, error) {
	c, err := connect(ctx, p, n)
	if err != nil {
		return 0, err
	}
	defer c.close()
	var (
		received atomic.Int64
		stopped  atomic.Bool
		wg       sync.WaitGroup
		errMu    sync.Mutex
		errs     []error
	)
	fail := func(err error) {
		errMu.Lock()
		errs = append(errs, err)
		errMu.Unlock()
	}
	for i := range n {
		wg.Go(func() {
			conn := c.dialled[i]
			buf := make([]byte, bufSize)
			for !stopped.Load() {
				if _, err := conn.Write(buf); err != nil {
					fail(fmt.Errorf("stream %d: send: %w", i, err))
					return
				}
			}
			// The receiver sees EOF.
			if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
				fail(fmt.Errorf("stream %d: close: %w", i, err))
			}
		})
		wg.Go(func() {
			conn := c.accepted[i]
			buf := make([]byte, bufSize)
			for {
				k, err := conn.Read(buf)
				received.Add(int64(k))
				if errors.Is(err, io.EOF) {
					return
				}
				if err != nil {
					fail(fmt.Errorf("stream %d: receive: %w", i, err))
					return
				}
			}
		})
	}
	// The window: the bytes received between its two ends.
	werr := wait(ctx, warmup)
	b0, t0 := received.Load(), time.Now()
	if werr == nil {
		werr = wait(ctx, duration)
	}
	b1, t1 := received.Load(), time.Now()
	stopped.Store(true)
	// Bound the end: a datapath that stopped carrying traffic must not
	// hang the run.
	end := time.Now().Add(drainTimeout)
	for i := range n {
		c.dialled[i].SetDeadline(end)
		c.accepted[i].SetDeadline(end)
	}
	wg.Wait()
	if werr != nil {
		return 0, werr
	}
	if len(errs) > 0 {
		return 0, errors.Join(errs...)
	}
	if b1 <= b0 {
		return 0, fmt.Errorf("no bytes arrived in the %v window", duration)
	}
	return float64(b1-b0) * 8 / t1.Sub(t0).Seconds() / 1e9, nil
}

// wait waits for d, or until ctx ends.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// roundTrips sends one byte from p.a to p.b and back, warm times untimed
// and then n times timed, one after the other on one connection, and
// returns the timed round trips.
func roundTrips(ctx context.Context, p *pair, warm, n int) ([]time.Duration, error) {
	c, err := connect(ctx, p, 1)
	if err != nil {
		return nil, err
	}
	defer c.close()
	client, server := c.dialled[0], c.accepted[0]
	deadline := time.Now().Add(drainTimeout + time.Duration(warm+n)*time.Millisecond)
	client.SetDeadline(deadline)
	server.SetDeadline(deadline)
	echoed := make(chan error, 1)
	go func() {
		b := make([]byte, 1)
		for {
			if _, err := io.ReadFull(server, b); err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				echoed <- err
				return
			}
			if _, err := server.Write(b); err != nil {
				echoed <- err
				return
			}
		}
	}()
	out := make([]time.Duration, 0, n)
	b := []byte{'x'}
	var rerr error
	for i := range warm + n {
		start := time.Now()
		if _, err := client.Write(b); err != nil {
			rerr = fmt.Errorf("round trip %d: send: %w", i, err)
			break
		}
		if _, err := io.ReadFull(client, b); err != nil {
			rerr = fmt.Errorf("round trip %d: receive: %w", i, err)
			break
		}
		if i >= warm {
			out = append(out, time.Since(start))
		}
	}
	client.(*net.TCPConn).CloseWrite()
	if err := <-echoed; err != nil && rerr == nil {
		rerr = fmt.Errorf("echo: %w", err)
	}
	if rerr != nil {
		return nil, errors.Join(ctx.Err(), rerr)
	}
	return out, nil
}
