package bridge

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/netplugins/internal/nft"
	"github.com/paddock-dev/paddock/netplugins/internal/statedir"
	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
)

// SetPolicy replaces the policy state: the tenants of pods on other nodes
// (they join the address → tenant map) and the ingress rules of local
// sandboxes. The sets and the policy chain change in one nftables batch.
func (p *Plugin) SetPolicy(ctx context.Context, r *networkv1.SetPolicyRequest) (*networkv1.SetPolicyResponse, error) {
	next, err := parsePolicy(r)
	if err != nil {
		return nil, err
	}
	p.setupMu.RLock()
	defer p.setupMu.RUnlock()
	cfg, _, err := p.snapshot(true)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	for i := range next.Remote {
		id, err := p.state.assignTenant(&p.tenants, next.Remote[i].Tenant)
		if err != nil {
			p.mu.Unlock()
			return nil, err
		}
		next.Remote[i].TenantID = id
	}
	prev := p.policy
	p.policy = next
	p.mu.Unlock()
	if err := p.applyRules(cfg, nil); err != nil {
		p.mu.Lock()
		p.policy = prev
		p.mu.Unlock()
		return nil, err
	}
	p.mu.Lock()
	err = statedir.WriteJSON(p.state.path("policy.json"), next)
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	p.log.Info("policy set", "remoteEndpoints", len(next.Remote), "ingressPolicies", len(next.Ingress))
	return &networkv1.SetPolicyResponse{}, nil
}

// parsePolicy validates a SetPolicyRequest; errors name the field.
func parsePolicy(r *networkv1.SetPolicyRequest) (policyState, error) {
	var out policyState
	for i, e := range r.RemoteEndpoints {
		ip, err := netip.ParseAddr(e.Ip)
		if err != nil || !ip.Is4() {
			return policyState{}, errdefs.Field(errdefs.ErrInvalidArgument, fmt.Sprintf("remote_endpoints[%d].ip", i), fmt.Sprintf("%q is not an IPv4 address", e.Ip))
		}
		if e.Tenant == "" {
			return policyState{}, errdefs.Field(errdefs.ErrInvalidArgument, fmt.Sprintf("remote_endpoints[%d].tenant", i), "is required")
		}
		out.Remote = append(out.Remote, remoteEndpoint{IP: ip, Tenant: e.Tenant})
	}
	for i, ing := range r.Ingress {
		field := fmt.Sprintf("ingress[%d]", i)
		if ing.SandboxId == "" {
			return policyState{}, errdefs.Field(errdefs.ErrInvalidArgument, field+".sandbox_id", "is required")
		}
		if out.Ingress == nil {
			out.Ingress = map[string][]ingressRule{}
		}
		if _, dup := out.Ingress[ing.SandboxId]; dup {
			return policyState{}, errdefs.Field(errdefs.ErrInvalidArgument, field+".sandbox_id", fmt.Sprintf("%s has another ingress policy already; merge their rules", ing.SandboxId))
		}
		rules := []ingressRule{}
		for j, rule := range ing.Rules {
			rf := fmt.Sprintf("%s.rules[%d]", field, j)
			var ir ingressRule
			for k, from := range rule.From {
				pfx, err := parsePrefix(fmt.Sprintf("%s.from[%d]", rf, k), from, true)
				if err != nil {
					if a, aerr := netip.ParseAddr(from); aerr == nil && a.Is4() {
						pfx, err = netip.PrefixFrom(a, 32), nil
					}
				}
				if err != nil {
					return policyState{}, err
				}
				ir.From = append(ir.From, pfx)
			}
			for k, port := range rule.Ports {
				pf := fmt.Sprintf("%s.ports[%d]", rf, k)
				proto := strings.ToUpper(port.Protocol)
				if proto == "" {
					proto = "TCP"
				}
				if _, ok := nft.Protocols[proto]; !ok {
					return policyState{}, errdefs.Field(errdefs.ErrInvalidArgument, pf+".protocol", fmt.Sprintf("%q is not TCP, UDP or SCTP", port.Protocol))
				}
				if port.Port > 65535 {
					return policyState{}, errdefs.Field(errdefs.ErrInvalidArgument, pf+".port", fmt.Sprintf("%d is not a port (1-65535, or 0 for every port)", port.Port))
				}
				pr := portRule{Protocol: proto, Port: uint16(port.Port)}
				if !slices.Contains(ir.Ports, pr) {
					ir.Ports = append(ir.Ports, pr)
				}
			}
			rules = append(rules, ir)
		}
		out.Ingress[ing.SandboxId] = rules
	}
	return out, nil
}
