package networktest

import (
	"net/netip"
	"strings"
	"testing"

	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// A stand-in target: defaults never calls it.
type noTarget struct{ Target }

func TestConfigDefaults(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "defaults", cfg: Config{Target: noTarget{}}},
		{name: "no target", cfg: Config{}, wantErr: "Target is nil"},
		{name: "not a network", cfg: Config{Target: noTarget{}, PodCIDR: "10.252.0.1/24"}, wantErr: `pod CIDR "10.252.0.1/24"`},
		{name: "IPv6", cfg: Config{Target: noTarget{}, ServiceCIDR: "fd00::/64"}, wantErr: "service CIDR"},
		{name: "too small", cfg: Config{Target: noTarget{}, PodCIDR: "10.252.0.0/25"}, wantErr: "want a /24 or larger"},
		{name: "outside the cluster", cfg: Config{Target: noTarget{}, PodCIDR: "10.9.0.0/24"}, wantErr: "inside the cluster CIDR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.defaults()
			if tc.wantErr == "" {
				if err != nil || tc.cfg.PodCIDR != DefaultPodCIDR || tc.cfg.ProbeTimeout == 0 || tc.cfg.NodeName == "" {
					t.Errorf("defaults() = %v, config %+v; want the defaults filled in", err, tc.cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("defaults() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// quotesEcho recognises only the ICMP errors about this probe's echo:
// another probe's, or a UDP datagram's to the same address, is not.
func TestQuotesEcho(t *testing.T) {
	dst := netip.MustParseAddr("10.0.0.4")
	quote := func(proto byte, to netip.Addr, payload []byte) []byte {
		h := make([]byte, 20)
		h[0], h[9] = 0x45, proto
		copy(h[16:], to.AsSlice())
		return append(h, payload...)
	}
	echo, err := (&icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: 0x1234, Seq: 1}}).Marshal(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		quoted []byte
		want   bool
	}{
		{"this echo", quote(1, dst, echo), true},
		{"another id", quote(1, dst, echo), false},
		{"another destination", quote(1, netip.MustParseAddr("10.0.0.5"), echo), false},
		{"a UDP datagram", quote(17, dst, echo), false},
		{"truncated", quote(1, dst, echo)[:22], false},
	} {
		id := 0x1234
		if tc.name == "another id" {
			id = 0x4321
		}
		if got := quotesEcho(tc.quoted, dst, id); got != tc.want {
			t.Errorf("%s: quotesEcho = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The truth table is reached within a tenant and dropped across, and
// the rendered matrix marks the cells that differ.
func TestMatrix(t *testing.T) {
	pod := func(tenant, ip string) *attachment {
		return &attachment{req: &networkv1.AttachRequest{Tenant: tenant}, addr: netip.PrefixFrom(netip.MustParseAddr(ip), 24)}
	}
	pods := []*attachment{pod("a", "10.0.0.2"), pod("a", "10.0.0.3"), pod("b", "10.0.0.4")}
	want := expectedMatrix(pods)
	if got := want[edge{0, 1, tcp80}].outcome; got != reached {
		t.Errorf("same tenant: %s, want reached", got)
	}
	if got := want[edge{0, 2, icmpv4}].outcome; got != dropped {
		t.Errorf("other tenant: %s, want dropped", got)
	}
	got := map[edge]result{}
	for e, r := range want {
		got[e] = r
	}
	got[edge{2, 0, udp53}] = result{outcome: refused}
	out := renderMatrix(pods, got, want)
	lines := strings.Split(out, "\n")
	if !strings.Contains(lines[3], "DXD!") || strings.Contains(lines[1], "!") || strings.Contains(lines[2], "!") {
		t.Errorf("rendered matrix marks the wrong cells:\n%s", out)
	}
}
