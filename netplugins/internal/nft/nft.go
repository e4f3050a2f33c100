// Package nft holds the nftables building blocks Paddock's network
// plugins share, on top of github.com/google/nftables (netlink, no nft
// process): expressions for the matches the plugins write (addresses,
// prefixes, interface names, set lookups of concatenated keys, ports),
// the byte encodings of set keys, and reading which elements a set holds.
//
// The functions only build values; a caller adds them to a
// *nftables.Conn batch and flushes it, so that a change made of several
// rules and elements applies atomically.
package nft

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Registers. Reg is the 16-byte register 1 for single values; Concat is
// the first 4-byte register of a concatenation (NFT_REG32_00): a value
// of n bytes there takes ceil(n/4) registers and the next value starts
// after them.
const (
	Reg    = 1
	Concat = 8
)

// Ether types and IP protocols the plugins match.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
)

// Protocols maps PortRule protocol names to IP protocol numbers.
var Protocols = map[string]byte{"TCP": unix.IPPROTO_TCP, "UDP": unix.IPPROTO_UDP, "SCTP": unix.IPPROTO_SCTP}

// IfnameLen is the size of an interface name in a register or key
// (IFNAMSIZ).
const IfnameLen = 16

// Ifname encodes an interface name as nftables compares it: NUL padded
// to IfnameLen bytes.
func Ifname(name string) []byte {
	b := make([]byte, IfnameLen)
	copy(b, name)
	return b
}

// IPv4 encodes an IPv4 address.
func IPv4(a netip.Addr) []byte {
	b := a.As4()
	return b[:]
}

// Uint32 encodes an integer in host byte order, as nftables' integer type
// shows it.
func Uint32(v uint32) []byte { return binaryutil.NativeEndian.PutUint32(v) }

// Key concatenates the parts of a concatenated set key, padding each to
// a multiple of 4 bytes as the registers do.
func Key(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
		if pad := len(p) % 4; pad != 0 {
			b = append(b, make([]byte, 4-pad)...)
		}
	}
	return b
}

// Verdicts.

// Accept is the verdict accept.
func Accept() expr.Any { return &expr.Verdict{Kind: expr.VerdictAccept} }

// Drop is the verdict drop.
func Drop() expr.Any { return &expr.Verdict{Kind: expr.VerdictDrop} }

// Jump jumps to chain; evaluation comes back after the rule when chain
// returns.
func Jump(chain string) expr.Any { return &expr.Verdict{Kind: expr.VerdictJump, Chain: chain} }

// Goto goes to chain: when it returns, evaluation goes on after the rule
// that jumped to the current chain.
func Goto(chain string) expr.Any { return &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain} }

// Loads.

// NetworkField loads len bytes at off of the network header into reg.
func NetworkField(reg, off, n uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}
}

// IPSaddr and IPDaddr load the IPv4 source or destination address.
func IPSaddr(reg uint32) expr.Any { return NetworkField(reg, 12, 4) }

// IPDaddr loads the IPv4 destination address into reg.
func IPDaddr(reg uint32) expr.Any { return NetworkField(reg, 16, 4) }

// ARPSenderMAC and ARPSenderIP load an Ethernet/IPv4 ARP packet's sender
// hardware and protocol addresses.
func ARPSenderMAC(reg uint32) expr.Any { return NetworkField(reg, 8, 6) }

// ARPSenderIP loads an Ethernet/IPv4 ARP packet's sender address.
func ARPSenderIP(reg uint32) expr.Any { return NetworkField(reg, 14, 4) }

// EtherSaddr loads the Ethernet source address.
func EtherSaddr(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6}
}

// Meta loads a meta key into reg.
func Meta(key expr.MetaKey, reg uint32) expr.Any { return &expr.Meta{Key: key, Register: reg} }

// Matches.

// Eq and Neq compare reg with data.
func Eq(reg uint32, data []byte) expr.Any {
	return &expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: data}
}

// Neq compares reg with data for inequality.
func Neq(reg uint32, data []byte) expr.Any {
	return &expr.Cmp{Op: expr.CmpOpNeq, Register: reg, Data: data}
}

// IPv4Only matches IPv4 packets in an inet-family chain.
func IPv4Only() []expr.Any {
	return []expr.Any{Meta(expr.MetaKeyNFPROTO, Reg), Eq(Reg, []byte{unix.NFPROTO_IPV4})}
}

// EtherType matches (or with neq, does not match) the frame's ether type
// in a bridge-family chain.
func EtherType(t uint16, neq bool) []expr.Any {
	b := binary.BigEndian.AppendUint16(nil, t)
	cmp := Eq(Reg, b)
	if neq {
		cmp = Neq(Reg, b)
	}
	return []expr.Any{Meta(expr.MetaKeyPROTOCOL, Reg), cmp}
}

// InPrefix matches when the IPv4 address load puts in Reg is (or with
// neq, is not) inside p.
func InPrefix(load expr.Any, p netip.Prefix, neq bool) []expr.Any {
	mask := net.CIDRMask(p.Bits(), 32)
	cmp := Eq(Reg, IPv4(p.Masked().Addr()))
	if neq {
		cmp = Neq(Reg, IPv4(p.Masked().Addr()))
	}
	return []expr.Any{
		load,
		&expr.Bitwise{SourceRegister: Reg, DestRegister: Reg, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		cmp,
	}
}

// CtState matches connections in any of the states of mask
// (expr.CtStateBit...).
func CtState(mask uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: Reg, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: Reg, DestRegister: Reg, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(mask), Xor: make([]byte, 4)},
		Neq(Reg, make([]byte, 4)),
	}
}

// Lookup matches when the key starting at register src is (or with
// invert, is not) in set.
func Lookup(set *nftables.Set, src uint32, invert bool) expr.Any {
	return &expr.Lookup{SourceRegister: src, SetName: set.Name, SetID: set.ID, Invert: invert}
}

// MapInto looks the key at src up in the map m and puts the value in dst;
// a key not in the map ends the rule (no match).
func MapInto(m *nftables.Set, src, dst uint32) expr.Any {
	return &expr.Lookup{SourceRegister: src, DestRegister: dst, IsDestRegSet: true, SetName: m.Name, SetID: m.ID}
}

// VerdictMap looks the key at src up in the verdict map m and applies
// the verdict found; a key not in the map goes on with the next rule.
func VerdictMap(m *nftables.Set, src uint32) expr.Any {
	return &expr.Lookup{SourceRegister: src, DestRegister: unix.NFT_REG_VERDICT, IsDestRegSet: true, SetName: m.Name, SetID: m.ID}
}

// VerdictChain returns the chain a verdict map element's value (as
// Elements returns it: the NFTA_DATA_VERDICT attributes) jumps or goes
// to, or "".
func VerdictChain(val []byte) string {
	for len(val) >= 4 {
		n := int(binary.NativeEndian.Uint16(val[0:2]))
		typ := binary.NativeEndian.Uint16(val[2:4]) &^ unix.NLA_F_NESTED
		if n < 4 || n > len(val) {
			return ""
		}
		if typ == unix.NFTA_VERDICT_CHAIN {
			return strings.TrimRight(string(val[4:n]), "\x00")
		}
		if next := (n + 3) &^ 3; next < len(val) {
			val = val[next:]
		} else {
			break
		}
	}
	return ""
}

// L4Port matches IP protocol proto and, when port is not 0, that
// destination port. Use in a chain where the packet is known to be IPv4.
func L4Port(proto byte, port uint16) []expr.Any {
	out := []expr.Any{Meta(expr.MetaKeyL4PROTO, Reg), Eq(Reg, []byte{proto})}
	if port != 0 {
		out = append(out,
			&expr.Payload{DestRegister: Reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			Eq(Reg, binary.BigEndian.AppendUint16(nil, port)))
	}
	return out
}

// Rule returns a rule of table's chain made of the expression groups in
// order.
func Rule(t *nftables.Table, c *nftables.Chain, groups ...[]expr.Any) *nftables.Rule {
	var exprs []expr.Any
	for _, g := range groups {
		exprs = append(exprs, g...)
	}
	return &nftables.Rule{Table: t, Chain: c, Exprs: exprs}
}

// One makes a single expression a group for Rule.
func One(e ...expr.Any) []expr.Any { return e }

// Elements returns the keys (as strings of bytes) of the elements of set,
// with their values.
func Elements(c *nftables.Conn, set *nftables.Set) (map[string][]byte, error) {
	elems, err := c.GetSetElements(set)
	if err != nil {
		return nil, fmt.Errorf("nftables: elements of set %s: %w", set.Name, err)
	}
	out := make(map[string][]byte, len(elems))
	for _, e := range elems {
		out[string(e.Key)] = e.Val
	}
	return out, nil
}

// Present returns the elements of want that set holds (by key), so that
// a batch deletes only those: deleting a missing element fails the whole
// batch.
func Present(have map[string][]byte, want []nftables.SetElement) []nftables.SetElement {
	var out []nftables.SetElement
	for _, e := range want {
		if _, ok := have[string(e.Key)]; ok {
			out = append(out, e)
		}
	}
	return out
}
