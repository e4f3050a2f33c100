// Package ipam is the host-local address management of Paddock's network
// plugins: it hands out the addresses of a node's pod range, one
// reservation per address, and keeps them in a directory so that they
// survive restarts of the plugin.
//
// # Layout
//
//	DIR/lock                 flock'd for every operation
//	DIR/addrs/10.244.0.5     one file per reserved address: {"sandboxId","ifname"}
//	DIR/last/10.244.0.0_24   the address given last in that range
//
// # Allocation
//
// The network address, the gateway (the range's first host address) and
// the broadcast address are never given. Allocation goes round robin from
// the address given last, so a just-freed address is not handed out again
// at once (a stale peer still holding it in a cache or a connection meets
// nobody). A range with no free address answers errdefs.ErrResourceExhausted.
//
// # Concurrency
//
// Every operation holds an exclusive flock on DIR/lock, so goroutines and
// processes sharing the directory never hand out one address twice.
package ipam

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/netplugins/internal/statedir"
)

// Owner is who holds a reservation: one interface of one sandbox.
type Owner struct {
	SandboxID string `json:"sandboxId"`
	Ifname    string `json:"ifname"`
}

func (o Owner) String() string { return o.SandboxID + "/" + o.Ifname }

// Reservation is one reserved address and its owner.
type Reservation struct {
	Addr  netip.Addr
	Owner Owner
}

// Store is the reservations kept in one directory. Its methods are safe
// for concurrent use, also by several processes.
type Store struct {
	dir string
}

// Open returns the store in dir, making the directory (0700) if needed.
func Open(dir string) (*Store, error) {
	for _, d := range []string{dir, filepath.Join(dir, "addrs"), filepath.Join(dir, "last")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("ipam: %w", err)
		}
	}
	return &Store{dir: dir}, nil
}

// CheckRange reports whether r can be a pod range: an IPv4 network
// (address bits past the prefix zero) with room for at least one address
// besides the network, gateway and broadcast addresses (/30 or larger).
func CheckRange(r netip.Prefix) error {
	switch {
	case !r.IsValid() || !r.Addr().Is4():
		return fmt.Errorf("%s is not an IPv4 network", r)
	case r.Masked() != r:
		return fmt.Errorf("%s is not a network address (did you mean %s?)", r, r.Masked())
	case r.Bits() > 30:
		return fmt.Errorf("%s is too small: a range needs a /30 or larger", r)
	}
	return nil
}

// Gateway is the range's gateway address: its first host address.
func Gateway(r netip.Prefix) netip.Addr { return r.Masked().Addr().Next() }

// Capacity is how many addresses r can give: all but the network,
// gateway and broadcast addresses.
func Capacity(r netip.Prefix) int {
	if CheckRange(r) != nil {
		return 0
	}
	return 1<<(32-r.Bits()) - 3
}

// Allocate reserves a free address of r for o. An owner holding an
// address already is ErrAlreadyExists; a range without a free address is
// ErrResourceExhausted.
func (s *Store) Allocate(r netip.Prefix, o Owner) (netip.Addr, error) {
	if err := CheckRange(r); err != nil {
		return netip.Addr{}, errdefs.New(errdefs.ErrInvalidArgument, "ipam: "+err.Error())
	}
	if o.SandboxID == "" || o.Ifname == "" {
		return netip.Addr{}, errdefs.New(errdefs.ErrInvalidArgument, "ipam: an owner needs a sandbox id and an interface name")
	}
	unlock, err := s.lock()
	if err != nil {
		return netip.Addr{}, err
	}
	defer unlock()
	all, err := s.list()
	if err != nil {
		return netip.Addr{}, err
	}
	used := map[netip.Addr]bool{}
	for _, res := range all {
		if res.Owner == o {
			return netip.Addr{}, errdefs.New(errdefs.ErrAlreadyExists, fmt.Sprintf("ipam: %s already holds %s", o, res.Addr))
		}
		used[res.Addr] = true
	}
	first, last := Gateway(r).Next(), broadcast(r).Prev()
	start := first
	if prev, ok := s.last(r); ok && r.Contains(prev) && prev.Compare(last) < 0 && prev.Compare(first) >= 0 {
		start = prev.Next()
	}
	a := start
	for {
		if !used[a] {
			if err := s.reserve(a, o); err != nil {
				return netip.Addr{}, err
			}
			if err := statedir.WriteFile(s.lastPath(r), []byte(a.String())); err != nil {
				s.remove(a)
				return netip.Addr{}, fmt.Errorf("ipam: %w", err)
			}
			return a, nil
		}
		if a = a.Next(); a.Compare(last) > 0 {
			a = first
		}
		if a == start {
			break
		}
	}
	n := 0
	for addr := range used {
		if r.Contains(addr) {
			n++
		}
	}
	return netip.Addr{}, errdefs.New(errdefs.ErrResourceExhausted,
		fmt.Sprintf("no address left in %s: %d of %d in use", r, n, Capacity(r)))
}

// Release frees every address o holds and returns them; an owner holding
// none is not an error.
func (s *Store) Release(o Owner) ([]netip.Addr, error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	all, err := s.list()
	if err != nil {
		return nil, err
	}
	var freed []netip.Addr
	for _, res := range all {
		if res.Owner != o {
			continue
		}
		if err := s.remove(res.Addr); err != nil {
			return freed, err
		}
		freed = append(freed, res.Addr)
	}
	return freed, nil
}

// Lookup returns the address o holds, if any.
func (s *Store) Lookup(o Owner) (netip.Addr, bool, error) {
	all, err := s.List()
	if err != nil {
		return netip.Addr{}, false, err
	}
	for _, res := range all {
		if res.Owner == o {
			return res.Addr, true, nil
		}
	}
	return netip.Addr{}, false, nil
}

// List returns every reservation, in address order.
func (s *Store) List() ([]Reservation, error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	return s.list()
}

// InUse returns how many addresses of r are reserved.
func (s *Store) InUse(r netip.Prefix) (int, error) {
	all, err := s.List()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, res := range all {
		if r.Contains(res.Addr) {
			n++
		}
	}
	return n, nil
}

func (s *Store) lock() (func(), error) {
	unlock, err := statedir.Lock(filepath.Join(s.dir, "lock"))
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	return unlock, nil
}

// list reads the reservations; the caller holds the lock.
func (s *Store) list() ([]Reservation, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, "addrs"))
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	var out []Reservation
	for _, e := range entries {
		a, err := netip.ParseAddr(e.Name())
		if err != nil {
			continue // a temporary file or something else that is no reservation
		}
		var o Owner
		b, err := os.ReadFile(filepath.Join(s.dir, "addrs", e.Name()))
		if err == nil {
			err = json.Unmarshal(b, &o)
		}
		if err != nil {
			return nil, fmt.Errorf("ipam: reservation %s: %w", a, err)
		}
		out = append(out, Reservation{Addr: a, Owner: o})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	return out, nil
}

// reserve writes a's reservation file; the caller holds the lock.
func (s *Store) reserve(a netip.Addr, o Owner) error {
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	if err := statedir.WriteFile(s.addrPath(a), b); err != nil {
		return fmt.Errorf("ipam: %w", err)
	}
	return nil
}

func (s *Store) remove(a netip.Addr) error {
	if err := statedir.Remove(s.addrPath(a)); err != nil {
		return fmt.Errorf("ipam: release %s: %w", a, err)
	}
	return nil
}

// last returns the address given last in r.
func (s *Store) last(r netip.Prefix) (netip.Addr, bool) {
	b, err := os.ReadFile(s.lastPath(r))
	if err != nil {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(strings.TrimSpace(string(b)))
	return a, err == nil
}

func (s *Store) addrPath(a netip.Addr) string { return filepath.Join(s.dir, "addrs", a.String()) }

func (s *Store) lastPath(r netip.Prefix) string {
	return filepath.Join(s.dir, "last", strings.ReplaceAll(r.String(), "/", "_"))
}

// broadcast is r's last address.
func broadcast(r netip.Prefix) netip.Addr {
	a := r.Masked().Addr().As4()
	host := uint32(1)<<(32-r.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
