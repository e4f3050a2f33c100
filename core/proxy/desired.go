package proxy

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/paddock-dev/paddock/core/api"
	"golang.org/x/sys/unix"
)

// servicePort is what one port of a service is programmed as: the
// desired state of its svc chain, its ext chain and its map elements.
type servicePort struct {
	// id is "tenant/name/proto/port", port being the port's name or, for
	// an unnamed port, its number. Chain names derive from it.
	id        string
	proto     uint8 // unix.IPPROTO_TCP or unix.IPPROTO_UDP
	clusterIP netip.Addr
	port      uint16
	nodePort  uint16 // 0: none
	// endpoints are the ready endpoints' addresses, sorted, without
	// duplicates.
	endpoints []netip.AddrPort
}

func (s *servicePort) equal(o *servicePort) bool {
	return s.id == o.id && s.proto == o.proto && s.clusterIP == o.clusterIP && s.port == o.port &&
		s.nodePort == o.nodePort && slices.Equal(s.endpoints, o.endpoints)
}

// svcChain and extChain name the port's chains.
func (s *servicePort) svcChain() string { return chainName("svc-", s.id) }
func (s *servicePort) extChain() string { return chainName("ext-", s.id) }

// maxChainName bounds the chains' names well below the kernel's 256.
const maxChainName = 128

// chainName returns prefix, a hash of id and id, cut to maxChainName: the
// hash keeps names unique when id is cut, and id keeps them readable.
func chainName(prefix, id string) string {
	sum := sha256.Sum256([]byte(id))
	name := prefix + strings.ToLower(base32.StdEncoding.EncodeToString(sum[:5])) + "-" + id
	if len(name) > maxChainName {
		name = name[:maxChainName]
	}
	return name
}

// serviceKey is how the proxy files a service: "tenant/name".
func serviceKey(tenant, name string) string { return tenant + "/" + name }

// protoNumber maps a service port's protocol to its IP protocol number;
// empty means TCP, as the API defaults it.
func protoNumber(p api.Protocol) (uint8, bool) {
	switch p {
	case "", api.ProtocolTCP:
		return unix.IPPROTO_TCP, true
	case api.ProtocolUDP:
		return unix.IPPROTO_UDP, true
	}
	return 0, false
}

func protoName(p uint8) string {
	if p == unix.IPPROTO_UDP {
		return "udp"
	}
	return "tcp"
}

// desiredPorts returns what svc's ports are to be programmed as, with ep
// (nil: none) giving the endpoints; the result is keyed by servicePort.id.
// A headless service (clusterIP None) or one without a cluster IP yet
// gets nothing. Errors name the field that is wrong.
func desiredPorts(svc *api.Service, ep *api.Endpoints) (map[string]*servicePort, error) {
	m := svc.Metadata
	if m.Tenant == "" || m.Name == "" {
		return nil, fmt.Errorf("service %q: metadata.tenant and metadata.name are required", serviceKey(m.Tenant, m.Name))
	}
	where := "service " + serviceKey(m.Tenant, m.Name)
	if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == "None" {
		return nil, nil
	}
	vip, err := netip.ParseAddr(svc.Spec.ClusterIP)
	if err != nil || !vip.Is4() {
		return nil, fmt.Errorf("%s: spec.clusterIP: %q is not an IPv4 address (the proxy supports IPv4 only)", where, svc.Spec.ClusterIP)
	}
	if ep != nil && (ep.Metadata.Tenant != m.Tenant || ep.Metadata.Name != m.Name) {
		return nil, fmt.Errorf("%s: endpoints %s belong to another service", where, serviceKey(ep.Metadata.Tenant, ep.Metadata.Name))
	}
	out := make(map[string]*servicePort, len(svc.Spec.Ports))
	for i, p := range svc.Spec.Ports {
		f := fmt.Sprintf("%s: spec.ports[%d]", where, i)
		proto, ok := protoNumber(p.Protocol)
		if !ok {
			return nil, fmt.Errorf("%s.protocol: %q is not TCP or UDP", f, p.Protocol)
		}
		if p.Port < 1 || p.Port > 65535 {
			return nil, fmt.Errorf("%s.port: %d is not a port number (1-65535)", f, p.Port)
		}
		if p.NodePort < 0 || p.NodePort > 65535 {
			return nil, fmt.Errorf("%s.nodePort: %d is not a port number (1-65535)", f, p.NodePort)
		}
		name := p.Name
		if name == "" {
			name = strconv.Itoa(int(p.Port))
		}
		sp := &servicePort{
			id:        m.Tenant + "/" + m.Name + "/" + protoName(proto) + "/" + name,
			proto:     proto,
			clusterIP: vip,
			port:      uint16(p.Port),
		}
		if svc.Spec.Type == api.ServiceNodePort {
			sp.nodePort = uint16(p.NodePort)
		}
		if ep != nil {
			if sp.endpoints, err = readyEndpoints(ep, p, proto, len(svc.Spec.Ports) == 1); err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
		}
		out[sp.id] = sp
	}
	return out, nil
}

// readyEndpoints returns the ready addresses of ep with the port that
// matches service port sp: the endpoint port of the same name, or, for a
// service of one port, a subset's only port.
func readyEndpoints(ep *api.Endpoints, sp api.ServicePort, proto uint8, onlyPort bool) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for i, sub := range ep.Subsets {
		port := -1
		for j, p := range sub.Ports {
			if pp, ok := protoNumber(p.Protocol); !ok || pp != proto {
				continue
			}
			if p.Name == sp.Name || (onlyPort && len(sub.Ports) == 1) {
				if p.Port < 1 || p.Port > 65535 {
					return nil, fmt.Errorf("endpoints: subsets[%d].ports[%d].port: %d is not a port number (1-65535)", i, j, p.Port)
				}
				port = int(p.Port)
				break
			}
		}
		if port < 0 {
			continue
		}
		for j, a := range sub.Addresses {
			ip, err := netip.ParseAddr(a.IP)
			if err != nil || !ip.Is4() {
				return nil, fmt.Errorf("endpoints: subsets[%d].addresses[%d].ip: %q is not an IPv4 address", i, j, a.IP)
			}
			out = append(out, netip.AddrPortFrom(ip, uint16(port)))
		}
	}
	slices.SortFunc(out, netip.AddrPort.Compare)
	return slices.Compact(out), nil
}

// hairpinAddrs returns the endpoint addresses of ports, each once.
func hairpinAddrs(ports map[string]*servicePort) []netip.Addr {
	var out []netip.Addr
	for _, sp := range ports {
		for _, e := range sp.endpoints {
			out = append(out, e.Addr())
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}
