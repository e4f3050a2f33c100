package proxy

import (
	"encoding/binary"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// This file builds the nftables objects: the table's fixed skeleton and
// the keys and rules of one service port.

// Names of the table's fixed objects.
const (
	DefaultTable = "paddock-proxy"

	setServiceIPs   = "service-ips"
	setNodePorts    = "service-nodeports"
	setHairpin      = "hairpin"
	chainServices   = "services"
	chainPrerouting = "prerouting"
	chainOutput     = "output"
	chainPostrout   = "postrouting"
	chainDNS        = "cluster-dns"

	// masqMark is the packet mark bit that asks postrouting to
	// masquerade (kube-proxy's).
	masqMark = 0x4000
)

// staticChains are the chains of the skeleton, which New rewrites.
var staticChains = map[string]bool{
	chainServices: true, chainPrerouting: true, chainOutput: true, chainPostrout: true, chainDNS: true,
}

var (
	serviceIPType = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	nodePortType  = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	hairpinType   = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeIPAddr)
	// endpointType is the data of a service port's endpoint map: the
	// address and port a DNAT loads into two registers.
	endpointType = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
)

// Registers as the kernel numbers them: 1 is the first 16-byte register
// (its first 4 bytes are 32-bit register 8), 9 and 10 the next 32-bit
// registers, which concatenations fill in turn.
const (
	reg1  = unix.NFT_REG_1
	reg9  = unix.NFT_REG32_01
	reg10 = unix.NFT_REG32_02
)

// padded returns b followed by zeros up to a multiple of 4 bytes, as a
// concatenation lays out each of its parts.
func padded(b ...byte) []byte {
	out := make([]byte, (len(b)+3)/4*4)
	copy(out, b)
	return out
}

func port16(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }

// serviceIPKey is an element key of @service-ips.
func serviceIPKey(ip netip.Addr, proto uint8, port uint16) []byte {
	a := ip.As4()
	return append(append(a[:], padded(proto)...), padded(port16(port)...)...)
}

// nodePortKey is an element key of @service-nodeports.
func nodePortKey(proto uint8, port uint16) []byte {
	return append(padded(proto), padded(port16(port)...)...)
}

// hairpinKey is the element of @hairpin for an endpoint address: source
// and destination both the endpoint.
func hairpinKey(ip netip.Addr) []byte {
	a := ip.As4()
	return append(a[:], a[:]...)
}

func gotoChain(name string) *expr.Verdict {
	return &expr.Verdict{Kind: expr.VerdictGoto, Chain: name}
}

// matchL4Proto is "meta l4proto PROTO".
func matchL4Proto(proto uint8) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{proto}},
	}
}

// setMasqMark is "meta mark set meta mark | 0x4000".
func setMasqMark() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^uint32(masqMark)), Xor: binaryutil.NativeEndian.PutUint32(masqMark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
	}
}

// sourceNotIn is "ip saddr != PREFIX".
func sourceNotIn(prefix netip.Prefix) []expr.Any {
	bits := make([]byte, 4)
	for i := range prefix.Bits() {
		bits[i/8] |= 0x80 >> (i % 8)
	}
	net := prefix.Masked().Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: bits, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: net[:]},
	}
}

// dnatTo is "meta l4proto PROTO dnat ip to ADDR:PORT".
func dnatTo(proto uint8, to netip.AddrPort) []expr.Any {
	a := to.Addr().As4()
	return append(matchL4Proto(proto),
		&expr.Immediate{Register: reg1, Data: a[:]},
		&expr.Immediate{Register: unix.NFT_REG_2, Data: port16(to.Port())},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegProtoMin: unix.NFT_REG_2, Specified: true},
	)
}

// rejectRule answers a new connection to a port without endpoints: a
// TCP reset, or ICMP port unreachable for UDP.
func rejectRule(proto uint8) []expr.Any {
	if proto == unix.IPPROTO_TCP {
		return append(matchL4Proto(proto), &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
	}
	return append(matchL4Proto(proto), &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: icmpPortUnreachable})
}

// icmpPortUnreachable is the code of ICMP destination unreachable that
// says the port is closed.
const icmpPortUnreachable = 3
