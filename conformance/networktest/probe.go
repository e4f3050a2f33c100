package networktest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/paddock-dev/paddock/internal/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// outcome is what became of a probe.
type outcome string

const (
	// reached: the packet arrived (TCP connected, the UDP listener got
	// the datagram, the echo was answered).
	reached outcome = "reached"
	// refused: a TCP reset or an ICMP port-unreachable came back.
	refused outcome = "refused"
	// unreachable: another ICMP error came back (host or network
	// unreachable, administratively prohibited), or the sender's own
	// kernel refused to send.
	unreachable outcome = "unreachable"
	// dropped: nothing came back within the probe timeout.
	dropped outcome = "dropped"
)

// letter is the outcome's letter in a printed matrix.
func (o outcome) letter() string {
	switch o {
	case reached:
		return "R"
	case refused:
		return "X"
	case unreachable:
		return "U"
	case dropped:
		return "D"
	}
	return "E"
}

// probe is one kind of packet: "tcp" or "udp" to a port, or "icmp".
type probe struct {
	proto string
	port  int
}

func (p probe) String() string {
	if p.proto == "icmp" {
		return "icmp"
	}
	return fmt.Sprintf("%s:%d", p.proto, p.port)
}

var (
	tcp80  = probe{"tcp", 80}
	tcp81  = probe{"tcp", 81}
	udp53  = probe{"udp", 53}
	icmpv4 = probe{proto: "icmp"}
)

// server is the listeners of one sandbox (or of the node): TCP on some
// ports, and an echoing UDP listener on port 53 that remembers which
// datagrams arrived and from where.
type server struct {
	udpPort int
	mu      sync.Mutex
	seen    map[string]netip.Addr // probe payload → source address
}

func (s *server) saw(payload string) (netip.Addr, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.seen[payload]
	return a, ok
}

// Serve starts listeners inside a's namespace: TCP on tcpPorts and UDP
// on 53, bound to every address. They close when the case ends.
func (t *T) Serve(a *attachment, tcpPorts ...int) *server {
	return t.serveAt(a.netns(), a.ip(), netip.Addr{}, 53, tcpPorts...)
}

// serveAt starts the listeners in the namespace at path ("": the host's)
// on bind (any address when invalid), UDP on udpPort (0: any free port,
// in server.udpPort), known to probes as ip.
func (t *T) serveAt(path string, ip, bind netip.Addr, udpPort int, tcpPorts ...int) *server {
	s := &server{seen: map[string]netip.Addr{}}
	host := ""
	if bind.IsValid() {
		host = bind.String()
	}
	var closers []func() error
	err := inNetns(path, func() error {
		for _, port := range tcpPorts {
			ln, err := net.Listen("tcp4", net.JoinHostPort(host, fmt.Sprint(port)))
			if err != nil {
				return err
			}
			closers = append(closers, ln.Close)
			go accept(ln)
		}
		pc, err := net.ListenPacket("udp4", net.JoinHostPort(host, fmt.Sprint(udpPort)))
		if err != nil {
			return err
		}
		closers = append(closers, pc.Close)
		s.udpPort = pc.LocalAddr().(*net.UDPAddr).Port
		go s.echo(pc)
		return nil
	})
	t.Cleanup(func() {
		for _, c := range closers {
			c()
		}
	})
	if err != nil {
		t.Fatalf("listeners in %s: %v", nsName(path), err)
	}
	t.mu.Lock()
	if t.servers == nil {
		t.servers = map[netip.Addr]*server{}
	}
	t.servers[ip] = s
	t.mu.Unlock()
	return s
}

func accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

func (s *server) echo(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if ua, ok := from.(*net.UDPAddr); ok {
			src, _ := netip.AddrFromSlice(ua.IP.To4())
			s.mu.Lock()
			s.seen[string(buf[:n])] = src
			s.mu.Unlock()
		}
		_, _ = pc.WriteTo(buf[:n], from)
	}
}

// inNetns runs fn inside the namespace at path, or right here for "".
func inNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	return netns.Do(path, fn)
}

func nsName(path string) string {
	if path == "" {
		return "the host"
	}
	return path
}

// send sends one probe from the namespace at path (source address from,
// or the kernel's choice when invalid) to dst, and says what became of
// it. It never ends the case: it runs on any goroutine.
func (t *T) send(path string, from, dst netip.Addr, p probe) (outcome, string) {
	switch p.proto {
	case "tcp":
		return t.sendTCP(path, dst, p.port)
	case "udp":
		return t.sendUDP(path, from, dst, p.port)
	case "icmp":
		return t.sendICMP(path, dst)
	}
	return "", "unknown probe " + p.String()
}

func (t *T) sendTCP(path string, dst netip.Addr, port int) (outcome, string) {
	var conn net.Conn
	err := inNetns(path, func() (err error) {
		d := net.Dialer{Timeout: t.env.cfg.ProbeTimeout}
		conn, err = d.DialContext(t.Context(), "tcp4", netip.AddrPortFrom(dst, uint16(port)).String())
		return err
	})
	if err == nil {
		conn.Close()
		return reached, ""
	}
	return classify(err)
}

// classify names the outcome of a socket error.
func classify(err error) (outcome, string) {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return refused, ""
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return unreachable, err.Error()
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return dropped, ""
	}
	return "", err.Error()
}

func (t *T) sendUDP(path string, from, dst netip.Addr, port int) (outcome, string) {
	var conn *net.UDPConn
	err := inNetns(path, func() (err error) {
		var laddr *net.UDPAddr
		if from.IsValid() {
			laddr = &net.UDPAddr{IP: from.AsSlice()}
		}
		conn, err = net.DialUDP("udp4", laddr, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, uint16(port))))
		return err
	})
	if err != nil {
		return "", err.Error()
	}
	defer conn.Close()
	payload := fmt.Sprintf("paddock-probe-%d", rand.Uint64())
	t.mu.Lock()
	srv := t.servers[dst]
	t.mu.Unlock()
	deadline := time.Now().Add(t.env.cfg.ProbeTimeout)
	// Twice, in case the first waits for ARP and is lost; the reply is
	// read in short slices so that the listener's record is seen early.
	var last error
	for sent := 0; time.Now().Before(deadline); {
		if sent < 2 {
			if _, err := conn.Write([]byte(payload)); err != nil {
				last = err
			}
			sent++
		}
		if srv != nil {
			if _, ok := srv.saw(payload); ok {
				return reached, ""
			}
		}
		conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		buf := make([]byte, 1500)
		n, err := conn.Read(buf)
		switch {
		case err == nil && string(buf[:n]) == payload && srv == nil:
			return reached, ""
		case err != nil && !errors.Is(err, os.ErrDeadlineExceeded):
			last = err
		}
	}
	if srv != nil {
		if _, ok := srv.saw(payload); ok {
			return reached, ""
		}
	}
	if last != nil {
		if o, detail := classify(last); o != "" {
			return o, detail
		}
		return "", last.Error()
	}
	return dropped, ""
}

func (t *T) sendICMP(path string, dst netip.Addr) (outcome, string) {
	var pc *icmp.PacketConn
	err := inNetns(path, func() (err error) {
		pc, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	})
	if err != nil {
		return "", err.Error()
	}
	defer pc.Close()
	id, seqno := int(rand.Uint32()&0xffff), int(rand.Uint32()&0xffff)
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seqno, Data: []byte("paddock-probe")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return "", err.Error()
	}
	if _, err := pc.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		if o, detail := classify(err); o != "" {
			return o, detail
		}
		return "", err.Error()
	}
	pc.SetReadDeadline(time.Now().Add(t.env.cfg.ProbeTimeout))
	buf := make([]byte, 1500)
	for {
		n, peer, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return dropped, ""
			}
			return "", err.Error()
		}
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil {
			continue
		}
		switch body := m.Body.(type) {
		case *icmp.Echo:
			if m.Type == ipv4.ICMPTypeEchoReply && body.ID == id && body.Seq == seqno && peer.String() == dst.String() {
				return reached, ""
			}
		case *icmp.DstUnreach:
			if quotesEcho(body.Data, dst, id) {
				return unreachable, fmt.Sprintf("ICMP destination unreachable code %d from %s", m.Code, peer)
			}
		case *icmp.TimeExceeded:
			if quotesEcho(body.Data, dst, id) {
				return unreachable, fmt.Sprintf("ICMP time exceeded from %s", peer)
			}
		}
	}
}

// quotesEcho reports whether an ICMP error quotes this probe's echo
// request: an IPv4 packet to dst carrying an ICMP echo with id.
func quotesEcho(quoted []byte, dst netip.Addr, id int) bool {
	if len(quoted) < 20 {
		return false
	}
	ihl := int(quoted[0]&0x0f) * 4
	if ihl < 20 || len(quoted) < ihl+6 || quoted[9] != 1 {
		return false
	}
	a, _ := netip.AddrFromSlice(quoted[16:20])
	echo := quoted[ihl:]
	return a == dst && echo[0] == byte(ipv4.ICMPTypeEcho) && int(echo[4])<<8|int(echo[5]) == id
}

// Expect sends a probe from src to dst and fails the case unless its
// outcome is want (or, with not set, unless it is anything but want).
func (t *T) Expect(src, dst *attachment, p probe, want outcome) {
	got, detail := t.send(src.netns(), netip.Addr{}, dst.ip(), p)
	if got != want {
		t.Errorf("%s → %s %s: %s, want %s%s", src, dst, p, orError(got), want, withDetail(detail))
	}
}

// ExpectNot fails the case if a probe from src to dst ends as not.
func (t *T) ExpectNot(src, dst *attachment, p probe, not outcome) {
	got, detail := t.send(src.netns(), netip.Addr{}, dst.ip(), p)
	if got == not {
		t.Errorf("%s → %s %s: %s, want anything else", src, dst, p, got)
	}
	t.Logf("%s → %s %s: %s%s", src, dst, p, orError(got), withDetail(detail))
}

func orError(o outcome) string {
	if o == "" {
		return "error"
	}
	return string(o)
}

func withDetail(detail string) string {
	if detail == "" {
		return ""
	}
	return " (" + detail + ")"
}

// matrixProbes are the probes of the truth table.
var matrixProbes = []probe{tcp80, udp53, icmpv4}

// edge is one probe of a matrix.
type edge struct {
	src, dst int
	probe    probe
}

// result is what became of one edge.
type result struct {
	outcome outcome
	detail  string
}

// Matrix sends every probe of matrixProbes from every pod to every other
// pod (each must Serve tcp 80) in parallel, and returns the outcomes.
func (t *T) Matrix(pods []*attachment) map[edge]result {
	var mu sync.Mutex
	out := map[edge]result{}
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i, src := range pods {
		for j, dst := range pods {
			if i == j {
				continue
			}
			for _, p := range matrixProbes {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer func() { <-sem; wg.Done() }()
					o, detail := t.send(src.netns(), netip.Addr{}, dst.ip(), p)
					mu.Lock()
					out[edge{i, j, p}] = result{o, detail}
					mu.Unlock()
				}()
			}
		}
	}
	wg.Wait()
	return out
}

// expectedMatrix is the truth table of tenant isolation: pods of one
// tenant reach each other, pods of different tenants are dropped.
func expectedMatrix(pods []*attachment) map[edge]result {
	want := map[edge]result{}
	for i, src := range pods {
		for j, dst := range pods {
			for _, p := range matrixProbes {
				if i == j {
					continue
				}
				o := dropped
				if src.req.Tenant == dst.req.Tenant {
					o = reached
				}
				want[edge{i, j, p}] = result{outcome: o}
			}
		}
	}
	return want
}

// CheckIsolation probes the truth table among pods and fails the case,
// with both matrices and the differing edges, unless it is as expected.
// The matrices go to the case's log either way. when names the moment
// ("before the restart").
func (t *T) CheckIsolation(pods []*attachment, when string) {
	want, got := expectedMatrix(pods), t.Matrix(pods)
	var diff []string
	for i := range pods {
		for j := range pods {
			for _, p := range matrixProbes {
				e := edge{i, j, p}
				if i == j || got[e].outcome == want[e].outcome {
					continue
				}
				diff = append(diff, fmt.Sprintf("  %s → %s %s: %s, want %s%s", pods[i], pods[j], p, orError(got[e].outcome), want[e].outcome, withDetail(got[e].detail)))
			}
		}
	}
	exp, obs := renderMatrix(pods, want, nil), renderMatrix(pods, got, want)
	if when != "" {
		when = " " + when
	}
	t.Logf("expected reachability%s:\n%s", when, exp)
	t.Logf("observed reachability%s:\n%s", when, obs)
	if len(diff) > 0 {
		t.Errorf("tenant isolation%s: %d probe(s) differ from the truth table:\n%s\nexpected:\n%s\nobserved (! marks a difference):\n%s",
			when, len(diff), strings.Join(diff, "\n"), exp, obs)
	}
}

// renderMatrix prints a matrix: a row per source, a column per
// destination, a letter per probe (tcp:80 udp:53 icmp; R reached, D
// dropped, X refused, U unreachable, E error), "!" after a cell that
// differs from want (when given).
func renderMatrix(pods []*attachment, m, want map[edge]result) string {
	var b strings.Builder
	names := make([]string, len(pods))
	for i, p := range pods {
		names[i] = fmt.Sprintf("%s/%s", p.req.Tenant, p.ip())
	}
	width := 0
	for _, n := range names {
		width = max(width, len(n))
	}
	fmt.Fprintf(&b, "  %-*s", width, "src \\ dst")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-*s", width, n)
	}
	b.WriteString("\n")
	for i := range pods {
		fmt.Fprintf(&b, "  %-*s", width, names[i])
		for j := range pods {
			cell := "-"
			if i != j {
				cell = ""
				mark := ""
				for _, p := range matrixProbes {
					e := edge{i, j, p}
					cell += m[e].outcome.letter()
					if want != nil && m[e].outcome != want[e].outcome {
						mark = "!"
					}
				}
				cell += mark
			}
			fmt.Fprintf(&b, "  %-*s", width, cell)
		}
		b.WriteString("\n")
	}
	b.WriteString("  (per cell: tcp:80 udp:53 icmp; R reached, D dropped, X refused, U unreachable, E error)")
	return b.String()
}
