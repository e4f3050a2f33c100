// Package proxytest builds the network namespaces that the service
// proxy's tests and benchmark B6 run in: a node namespace the proxy
// programs, a client namespace outside the cluster, and pod namespaces,
// each joined to the node by a veth pair and routed through it. It also
// serves and dials inside those namespaces. Traffic never leaves them.
//
// Addresses: the client is 192.168.50.2 behind the node's 192.168.50.1
// (the node's address for node ports); pod i is 10.244.i.2 behind the
// node's 10.244.i.1, and the cluster CIDR is 10.244.0.0/16. It needs root
// and the ip command (iproute2).
package proxytest

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/internal/netns"
)

// Addresses of the topology.
const (
	ClusterCIDR = "10.244.0.0/16"
)

var (
	// NodeIP is the node's address on the client's link.
	NodeIP = netip.MustParseAddr("192.168.50.1")
	// ClientIP is the client namespace's address.
	ClientIP = netip.MustParseAddr("192.168.50.2")
)

// Pod is one pod namespace.
type Pod struct {
	Name  string // also what its servers answer with
	NetNS string // path
	IP    netip.Addr
	index int
}

// Topology is a node, a client and pods, each a network namespace.
type Topology struct {
	Node   string // path of the node's namespace
	Client string // path of the client's namespace
	Pods   []*Pod

	prefix  string
	names   []string // namespaces made, to remove
	mu      sync.Mutex
	closers []io.Closer
}

// New makes the node and client namespaces and pods pod namespaces.
func New(pods int) (_ *Topology, err error) {
	if pods < 0 || pods > 200 {
		return nil, fmt.Errorf("proxytest: pods: %d is not between 0 and 200", pods)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("proxytest: the ip command (iproute2): %w", err)
	}
	b := make([]byte, 3)
	rand.Read(b)
	t := &Topology{prefix: "pdkp-" + hex.EncodeToString(b)}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	node, err := t.add("node")
	if err != nil {
		return nil, err
	}
	t.Node = node
	if err := t.sysctl(node, "net/ipv4/ip_forward", "1"); err != nil {
		return nil, err
	}
	if t.Client, err = t.add("client"); err != nil {
		return nil, err
	}
	if err := t.link("client", "vc", netip.PrefixFrom(NodeIP, 24), netip.PrefixFrom(ClientIP, 24)); err != nil {
		return nil, err
	}
	for i := range pods {
		name := fmt.Sprintf("pod%d", i)
		path, err := t.add(name)
		if err != nil {
			return nil, err
		}
		gw := netip.AddrFrom4([4]byte{10, 244, byte(i), 1})
		ip := netip.AddrFrom4([4]byte{10, 244, byte(i), 2})
		if err := t.link(name, fmt.Sprintf("vp%d", i), netip.PrefixFrom(gw, 24), netip.PrefixFrom(ip, 24)); err != nil {
			return nil, err
		}
		t.Pods = append(t.Pods, &Pod{Name: name, NetNS: path, IP: ip, index: i})
	}
	return t, nil
}

func (t *Topology) nsName(role string) string { return t.prefix + "-" + role }

// add makes namespace role with ip netns (under /run/netns) and returns
// its path.
func (t *Topology) add(role string) (string, error) {
	name := t.nsName(role)
	if err := run("ip", "netns", "add", name); err != nil {
		return "", err
	}
	t.names = append(t.names, name)
	if err := run("ip", "-n", name, "link", "set", "lo", "up"); err != nil {
		return "", err
	}
	return filepath.Join("/run/netns", name), nil
}

// link joins namespace role to the node: nodeEnd on the node's side of a
// veth named dev, peer (with a default route through nodeEnd) as eth0 in
// role's namespace.
func (t *Topology) link(role, dev string, nodeEnd, peer netip.Prefix) error {
	node, ns := t.nsName("node"), t.nsName(role)
	for _, args := range [][]string{
		{"-n", node, "link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"-n", node, "addr", "add", nodeEnd.String(), "dev", dev},
		{"-n", node, "link", "set", dev, "up"},
		{"-n", ns, "addr", "add", peer.String(), "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "route", "add", "default", "via", nodeEnd.Addr().String()},
	} {
		if err := run("ip", args...); err != nil {
			return err
		}
	}
	return nil
}

// AddAddress gives pod another address, routed to it from the node.
func (t *Topology) AddAddress(pod *Pod, ip netip.Addr) error {
	if err := run("ip", "-n", t.nsName(pod.Name), "addr", "add", ip.String()+"/32", "dev", "eth0"); err != nil {
		return err
	}
	return run("ip", "-n", t.nsName("node"), "route", "add", ip.String()+"/32", "dev", fmt.Sprintf("vp%d", pod.index))
}

func (t *Topology) sysctl(ns, key, value string) error {
	return netns.Do(ns, func() error {
		return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644)
	})
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Close stops the servers and removes the namespaces.
func (t *Topology) Close() error {
	t.mu.Lock()
	closers := t.closers
	t.closers = nil
	t.mu.Unlock()
	for _, c := range closers {
		c.Close()
	}
	var errs []error
	for _, name := range t.names {
		if err := run("ip", "netns", "del", name); err != nil {
			errs = append(errs, err)
		}
	}
	t.names = nil
	return errors.Join(errs...)
}

// Serve answers on TCP and UDP port port of every address of namespace
// ns: a TCP connection gets "NAME SOURCE\n" (SOURCE the client's address
// as seen here) and is closed; a UDP datagram is answered with the same.
// The servers stop at Close.
func (t *Topology) Serve(ns, name string, port int) error {
	var ln net.Listener
	var pc net.PacketConn
	err := netns.Do(ns, func() (err error) {
		if ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", port)); err != nil {
			return err
		}
		if pc, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", port)); err != nil {
			ln.Close()
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("proxytest: serve in %s: %w", name, err)
	}
	t.mu.Lock()
	t.closers = append(t.closers, ln, pc)
	t.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			src := c.RemoteAddr().(*net.TCPAddr).IP.String()
			fmt.Fprintf(c, "%s %s\n", name, src)
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(fmt.Appendf(nil, "%s %s\n", name, from.(*net.UDPAddr).IP), from)
		}
	}()
	return nil
}

// Reply is what a server of Serve answered.
type Reply struct {
	Name   string     // the server's name
	Source netip.Addr // the client's address as the server saw it
}

func parseReply(line string) (Reply, error) {
	f := strings.Fields(line)
	if len(f) != 2 {
		return Reply{}, fmt.Errorf("unexpected reply %q", line)
	}
	src, err := netip.ParseAddr(f[1])
	if err != nil {
		return Reply{}, fmt.Errorf("unexpected reply %q", line)
	}
	return Reply{Name: f[0], Source: src}, nil
}

// DialTCP connects from namespace ns to addr and reads the server's
// reply.
func DialTCP(ns string, addr netip.AddrPort, timeout time.Duration) (Reply, error) {
	var r Reply
	err := netns.Do(ns, func() error {
		c, err := net.DialTimeout("tcp4", addr.String(), timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		r, err = parseReply(line)
		return err
	})
	return r, err
}

// ExchangeUDP sends a datagram from namespace ns to addr and reads the
// answer.
func ExchangeUDP(ns string, addr netip.AddrPort, timeout time.Duration) (Reply, error) {
	var r Reply
	err := netns.Do(ns, func() error {
		c, err := net.Dial("udp4", addr.String())
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		if _, err := c.Write([]byte("?")); err != nil {
			return err
		}
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		r, err = parseReply(string(buf[:n]))
		return err
	})
	return r, err
}
