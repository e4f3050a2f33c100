package bridge

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/paddock-dev/paddock/netplugins/internal/ipam"
	"github.com/paddock-dev/paddock/netplugins/internal/statedir"
)

// key names one attachment.
type key struct {
	SandboxID string
	Ifname    string
}

func (k key) String() string { return k.SandboxID + "/" + k.Ifname }

func (k key) owner() ipam.Owner { return ipam.Owner{SandboxID: k.SandboxID, Ifname: k.Ifname} }

// file is the attachment's record file name: a hash, since sandbox ids
// may hold any character.
func (k key) file() string {
	h := sha256.Sum256([]byte(k.SandboxID + "\x00" + k.Ifname))
	return hex.EncodeToString(h[:]) + ".json"
}

// hostVeth names the host side of k's veth pair on bridge: "pdk" and 12
// hex digits of a hash of the bridge, the sandbox id and the interface
// name (15 characters, the kernel's limit). The bridge is part of the
// hash so that two plugin instances on one host never pick one name.
func hostVeth(bridge string, k key) string {
	h := sha256.Sum256([]byte(bridge + "\x00" + k.SandboxID + "\x00" + k.Ifname))
	return "pdk" + hex.EncodeToString(h[:6])
}

// record is what the plugin keeps of an attachment (attachments/HASH.json).
type record struct {
	SandboxID    string            `json:"sandboxId"`
	Ifname       string            `json:"ifname"`
	NetnsPath    string            `json:"netnsPath"`
	Tenant       string            `json:"tenant"`
	TenantID     uint32            `json:"tenantId"`
	PodName      string            `json:"podName,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	Address      netip.Prefix      `json:"address"` // 10.244.0.5/24
	Gateway      netip.Addr        `json:"gateway"`
	MAC          string            `json:"mac"`
	MTU          int               `json:"mtu"`
	HostVeth     string            `json:"hostVeth"`
	HostMAC      string            `json:"hostMac"`
	DefaultRoute bool              `json:"defaultRoute"` // Attach added the sandbox's default route
}

func (r *record) key() key { return key{r.SandboxID, r.Ifname} }

// mac is the pod side's MAC as bytes (nil if the record's is invalid).
func (r *record) mac() []byte {
	m, _ := net.ParseMAC(r.MAC)
	return m
}

// nodeState is what SetupNode set (node.json).
type nodeState struct {
	Name        string       `json:"name"`
	PodCIDR     netip.Prefix `json:"podCIDR"`
	ClusterCIDR netip.Prefix `json:"clusterCIDR"`
	ServiceCIDR netip.Prefix `json:"serviceCIDR,omitzero"`
	RequestMTU  uint32       `json:"requestMtu,omitempty"`
	MTU         int          `json:"mtu"` // in effect
}

// Gateway is the bridge's address in the pod range.
func (n *nodeState) Gateway() netip.Addr { return ipam.Gateway(n.PodCIDR) }

// tenantIDs is the persisted assignment of tenant ids (tenants.json):
// ids are never reused, so two tenants never share one.
type tenantIDs struct {
	Next uint32            `json:"next"`
	IDs  map[string]uint32 `json:"ids"`
}

// remoteEndpoint is a pod on another node that SetPolicy named.
type remoteEndpoint struct {
	IP       netip.Addr `json:"ip"`
	Tenant   string     `json:"tenant"`
	TenantID uint32     `json:"tenantId"`
}

// ingressRule is one IngressRule, validated.
type ingressRule struct {
	From  []netip.Prefix `json:"from,omitempty"`
	Ports []portRule     `json:"ports,omitempty"`
}

type portRule struct {
	Protocol string `json:"protocol,omitempty"`
	Port     uint16 `json:"port,omitempty"`
}

// policyState is the last SetPolicy (policy.json).
type policyState struct {
	Remote  []remoteEndpoint         `json:"remote,omitempty"`
	Ingress map[string][]ingressRule `json:"ingress,omitempty"`
}

// store is the plugin's state directory:
//
//	node.json               the node setup (nodeState)
//	tenants.json            tenant ids (tenantIDs), tenants.lock guards it
//	policy.json             the last policy (policyState)
//	attachments/HASH.json   one record per attachment
//	ipam/                   the address reservations (package ipam)
type store struct {
	dir string
}

func (s store) path(name string) string { return filepath.Join(s.dir, name) }
func (s store) recordPath(k key) string { return filepath.Join(s.dir, "attachments", k.file()) }

func (s store) init() error {
	for _, d := range []string{s.dir, s.path("attachments")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("state dir: %w", err)
		}
	}
	return os.Chmod(s.dir, 0o700)
}

// records loads every attachment record.
func (s store) records() (map[key]*record, error) {
	entries, err := os.ReadDir(s.path("attachments"))
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	out := map[key]*record{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		r := &record{}
		if _, err := statedir.ReadJSON(filepath.Join(s.path("attachments"), e.Name()), r); err != nil {
			return nil, err
		}
		out[r.key()] = r
	}
	return out, nil
}

// assignTenant returns tenant's id, giving it the next free one (and
// persisting that) when it has none. Processes sharing the directory take
// turns on tenants.lock.
func (s store) assignTenant(cache *tenantIDs, tenant string) (uint32, error) {
	if id, ok := cache.IDs[tenant]; ok {
		return id, nil
	}
	unlock, err := statedir.Lock(s.path("tenants.lock"))
	if err != nil {
		return 0, err
	}
	defer unlock()
	var disk tenantIDs
	if _, err := statedir.ReadJSON(s.path("tenants.json"), &disk); err != nil {
		return 0, err
	}
	if disk.IDs == nil {
		disk.IDs = map[string]uint32{}
	}
	if disk.Next == 0 {
		disk.Next = 1
	}
	id, ok := disk.IDs[tenant]
	if !ok {
		id = disk.Next
		disk.IDs[tenant] = id
		disk.Next++
		if err := statedir.WriteJSON(s.path("tenants.json"), &disk); err != nil {
			return 0, err
		}
	}
	cache.Next = disk.Next
	cache.IDs = maps.Clone(disk.IDs)
	return id, nil
}
