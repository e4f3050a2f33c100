package bridge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/paddock-dev/paddock/internal/netns"
	"github.com/paddock-dev/paddock/internal/testlock"
	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
	"github.com/vishvananda/netlink"
)

// needRoot skips the test outside CI when it cannot make network
// namespaces, bridges and nftables tables (not root), and fails it under
// CI=true. It takes the machine-wide test lock.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test makes network namespaces, bridges and nftables tables and needs root, and CI=true")
		}
		t.Skip("skipping: this test makes network namespaces, bridges and nftables tables and needs root")
	}
	testlock.Machine(t)
}

// cidrs counts the tests' pod ranges: 10.251.N.0/24.
var cidrs atomic.Int32

// env is one plugin instance of a test on its own bridge, table, state
// directory and pod range, all removed when the test ends.
type env struct {
	t        *testing.T
	p        *Plugin
	cfg      []byte
	bridge   string
	table    string
	stateDir string
	podCIDR  netip.Prefix
	nsDir    string
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newEnv makes a configured plugin with its node set up on pod range
// 10.251.N.0/BITS.
func newEnv(t *testing.T, bits int) *env {
	t.Helper()
	e := newNames(t, bits)
	e.p = e.start()
	if _, err := e.p.SetupNode(t.Context(), e.setupRequest()); err != nil {
		t.Fatalf("SetupNode: %v", err)
	}
	return e
}

// newNames returns an env with fresh names and no plugin yet.
func newNames(t *testing.T, bits int) *env {
	t.Helper()
	needRoot(t)
	suffix := randomHex(3)
	e := &env{
		t:        t,
		bridge:   "pdtb" + suffix,
		table:    "paddock-test-" + suffix,
		stateDir: t.TempDir(),
		nsDir:    t.TempDir(),
		podCIDR:  netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 251, byte(cidrs.Add(1)), 0}), bits),
	}
	e.cfg = fmt.Appendf(nil, `{"bridge":%q,"table":%q}`, e.bridge, e.table)
	t.Cleanup(e.cleanup)
	return e
}

func (e *env) setupRequest() *networkv1.SetupNodeRequest {
	return &networkv1.SetupNodeRequest{NodeName: "n1", PodCidr: e.podCIDR.String(), ClusterCidr: "10.251.0.0/16", ServiceCidr: "10.96.0.0/16"}
}

// start returns a new configured plugin on the env's state directory.
func (e *env) start() *Plugin {
	e.t.Helper()
	p := New(Options{Logger: slog.New(slog.NewTextHandler(testWriter{e.t}, nil))})
	if _, err := p.SetConfig(e.t.Context(), &networkv1.SetConfigRequest{ApiVersion: "v1", Config: e.cfg, StateDir: e.stateDir}); err != nil {
		e.t.Fatalf("SetConfig: %v", err)
	}
	return p
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// cleanup removes every attachment, the bridge and the tables.
func (e *env) cleanup() {
	ctx := context.Background()
	if e.p != nil {
		if resp, err := e.p.GC(ctx, &networkv1.GCRequest{}); err != nil || len(resp.Errors) > 0 {
			e.t.Errorf("cleanup: GC = %v %v", resp, err)
		}
	}
	if l, err := netlink.LinkByName(e.bridge); err == nil {
		_ = netlink.LinkDel(l)
	}
	if c, err := nftables.New(); err == nil {
		for _, fam := range []nftables.TableFamily{nftables.TableFamilyINet, nftables.TableFamilyBridge} {
			c.DelTable(&nftables.Table{Name: e.table, Family: fam})
		}
		_ = c.Flush()
	}
}

// netns makes a network namespace for the test, removed when it ends.
func (e *env) netns(name string) string {
	e.t.Helper()
	path := filepath.Join(e.nsDir, name)
	if err := netns.Create(path); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = netns.Remove(path) })
	return path
}

// pod is an attached sandbox.
type pod struct {
	id, tenant, ns string
	ip             netip.Addr
	resp           *networkv1.AttachResponse
}

// attach makes a namespace for sandbox id and attaches it as eth0.
func (e *env) attach(id, tenant string) *pod {
	e.t.Helper()
	ns := e.netns(id)
	resp, err := e.p.Attach(e.t.Context(), &networkv1.AttachRequest{SandboxId: id, Tenant: tenant, PodName: id, NetnsPath: ns, Ifname: "eth0"})
	if err != nil {
		e.t.Fatalf("Attach(%s): %v", id, err)
	}
	return &pod{id: id, tenant: tenant, ns: ns, ip: netip.MustParsePrefix(resp.Ips[0].Address).Addr(), resp: resp}
}

func (e *env) detach(id, ns, ifname string) error {
	_, err := e.p.Detach(e.t.Context(), &networkv1.DetachRequest{SandboxId: id, NetnsPath: ns, Ifname: ifname})
	return err
}

func (e *env) check(id, ns, ifname string) error {
	_, err := e.p.Check(e.t.Context(), &networkv1.CheckRequest{SandboxId: id, NetnsPath: ns, Ifname: ifname})
	return err
}

// listen opens a TCP listener on port inside ns that accepts and closes
// connections until the test ends.
func listen(t *testing.T, ns string, port int) {
	t.Helper()
	var l net.Listener
	err := netns.Do(ns, func() error {
		var err error
		l, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

// dialTimeout is how long a connection attempt may take before it counts
// as dropped. Inside one host a connection is made in microseconds; the
// margin is for a loaded machine.
const dialTimeout = 1500 * time.Millisecond

// dial connects from ns (the host's namespace if ns is "") to addr and
// classifies the outcome: "ok", "dropped" (timed out: no answer at all)
// or "refused" (or another error).
func dial(t *testing.T, ns string, addr netip.AddrPort) string {
	t.Helper()
	var out string
	do := func() error {
		c, err := net.DialTimeout("tcp4", addr.String(), dialTimeout)
		switch {
		case err == nil:
			c.Close()
			out = "ok"
		case errors.Is(err, syscall.ECONNREFUSED):
			out = "refused"
		case isTimeout(err):
			out = "dropped"
		default:
			out = err.Error()
		}
		return nil
	}
	if ns == "" {
		_ = do()
	} else if err := netns.Do(ns, do); err != nil {
		t.Fatal(err)
	}
	return out
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// inNS runs fn in ns with a netlink handle of that namespace.
func inNS(t *testing.T, ns string, fn func(h *netlink.Handle) error) {
	t.Helper()
	err := netns.Do(ns, func() error {
		h, err := netlink.NewHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		return fn(h)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// run runs a command (ip, nft) to inspect or disturb the kernel's state.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
