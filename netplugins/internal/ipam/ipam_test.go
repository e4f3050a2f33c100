package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"

	"github.com/paddock-dev/paddock/core/errdefs"
)

// helperEnv makes the test binary a helper process that allocates
// addresses in a shared directory (see TestTwoProcesses).
const helperEnv = "PADDOCK_IPAM_TEST_HELPER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(helper(spec))
	}
	os.Exit(m.Run())
}

// helper allocates n addresses of a range in dir for owners named
// after prefix; spec is "DIR RANGE PREFIX N".
func helper(spec string) int {
	var dir, rng, prefix string
	var n int
	if _, err := fmt.Sscanf(spec, "%s %s %s %d", &dir, &rng, &prefix, &n); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	s, err := Open(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i := range n {
		if _, err := s.Allocate(netip.MustParsePrefix(rng), Owner{SandboxID: prefix + strconv.Itoa(i), Ifname: "eth0"}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

func owner(i int) Owner { return Owner{SandboxID: fmt.Sprintf("sb%d", i), Ifname: "eth0"} }

func TestCheckRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		cap_ int
	}{
		{"10.244.0.0/24", true, 253},
		{"10.244.0.0/29", true, 5},
		{"10.244.0.0/30", true, 1},
		{"10.244.0.0/31", false, 0},
		{"10.244.0.5/24", false, 0},
		{"fd00::/64", false, 0},
	} {
		t.Run(tc.in, func(t *testing.T) {
			r := netip.MustParsePrefix(tc.in)
			if err := CheckRange(r); (err == nil) != tc.ok {
				t.Errorf("CheckRange(%s) = %v, want ok %v", r, err, tc.ok)
			}
			if got := Capacity(r); got != tc.cap_ {
				t.Errorf("Capacity(%s) = %d, want %d", r, got, tc.cap_)
			}
		})
	}
}

func TestAllocateExhaustsAndSkipsReserved(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := netip.MustParsePrefix("10.251.9.0/29")
	var got []string
	for i := range 5 {
		a, err := s.Allocate(r, owner(i))
		if err != nil {
			t.Fatalf("Allocate #%d: %v", i, err)
		}
		got = append(got, a.String())
	}
	want := "[10.251.9.2 10.251.9.3 10.251.9.4 10.251.9.5 10.251.9.6]"
	if fmt.Sprint(got) != want {
		t.Errorf("addresses = %v, want %s (never .0, the gateway .1 or broadcast .7)", got, want)
	}
	_, err = s.Allocate(r, owner(5))
	if !errors.Is(err, errdefs.ErrResourceExhausted) || err.Error() != "no address left in 10.251.9.0/29: 5 of 5 in use" {
		t.Fatalf("Allocate #6 = %v, want ErrResourceExhausted \"no address left in 10.251.9.0/29: 5 of 5 in use\"", err)
	}
	if n, _ := s.InUse(r); n != 5 {
		t.Errorf("InUse = %d after a failed allocation, want 5", n)
	}
	freed, err := s.Release(owner(2))
	if err != nil || len(freed) != 1 || freed[0].String() != "10.251.9.4" {
		t.Fatalf("Release(sb2) = %v, %v, want [10.251.9.4]", freed, err)
	}
	if a, err := s.Allocate(r, owner(5)); err != nil || a.String() != "10.251.9.4" {
		t.Errorf("Allocate after a release = %v, %v, want the freed 10.251.9.4", a, err)
	}
}

func TestRoundRobinAndRestart(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := netip.MustParsePrefix("10.251.9.0/24")
	a, err := s.Allocate(r, owner(0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Release(owner(0)); err != nil {
		t.Fatal(err)
	}
	b, err := s.Allocate(r, owner(1))
	if err != nil {
		t.Fatal(err)
	}
	if b == a {
		t.Errorf("the just-freed %s was handed out again at once", a)
	}
	if _, err := s.Allocate(r, owner(1)); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("second Allocate for one owner = %v, want ErrAlreadyExists", err)
	}
	// A new Store on the directory (a restarted plugin) sees the
	// reservation and goes on after the last address given.
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok, err := s2.Lookup(owner(1)); err != nil || !ok || got != b {
		t.Errorf("Lookup after reopen = %v %v %v, want %s", got, ok, err, b)
	}
	c, err := s2.Allocate(r, owner(2))
	if err != nil {
		t.Fatal(err)
	}
	if c != b.Next() {
		t.Errorf("Allocate after reopen = %s, want %s (round robin from the last given)", c, b.Next())
	}
	if freed, err := s2.Release(owner(9)); err != nil || len(freed) != 0 {
		t.Errorf("Release of an owner with nothing = %v, %v, want nothing and no error", freed, err)
	}
}

// TestConcurrentGoroutines allocates and releases from many goroutines
// on two Stores of one directory: no address is given twice.
func TestConcurrentGoroutines(t *testing.T) {
	dir := t.TempDir()
	stores := make([]*Store, 2)
	for i := range stores {
		var err error
		if stores[i], err = Open(dir); err != nil {
			t.Fatal(err)
		}
	}
	r := netip.MustParsePrefix("10.251.9.0/24")
	var mu sync.Mutex
	held := map[netip.Addr]Owner{}
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			s := stores[i%2]
			a, err := s.Allocate(r, owner(i))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			if prev, dup := held[a]; dup {
				t.Errorf("%s given to %s and %s", a, prev, owner(i))
			}
			held[a] = owner(i)
			mu.Unlock()
			if i%3 == 0 {
				mu.Lock()
				delete(held, a)
				mu.Unlock()
				if _, err := s.Release(owner(i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	all, err := stores[0].List()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(held) {
		t.Errorf("%d reservations on disk, want %d", len(all), len(held))
	}
	for _, res := range all {
		if held[res.Addr] != res.Owner {
			t.Errorf("reservation %s for %s, want %s", res.Addr, res.Owner, held[res.Addr])
		}
	}
}

// TestTwoProcesses runs two helper processes allocating in one directory
// at once: together they hold distinct addresses.
func TestTwoProcesses(t *testing.T) {
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const per = 60
	var cmds []*exec.Cmd
	for _, prefix := range []string{"a", "b"} {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s 10.251.9.0/24 %s %d", helperEnv, dir, prefix, per))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	all, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2*per {
		t.Fatalf("%d reservations, want %d", len(all), 2*per)
	}
	seen := map[netip.Addr]bool{}
	for _, res := range all {
		if seen[res.Addr] {
			t.Errorf("%s reserved twice", res.Addr)
		}
		seen[res.Addr] = true
	}
}
