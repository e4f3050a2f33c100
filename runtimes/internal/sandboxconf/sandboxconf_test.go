package sandboxconf

import (
	"strings"
	"testing"

	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

func TestFiles(t *testing.T) {
	long := strings.Repeat("p", 70)
	f := Files(&runtimev1.SandboxConfig{Name: long, Dns: &runtimev1.DNSConfig{
		Servers: []string{"10.96.0.10"}, Searches: []string{"acme.svc.cluster.local", "svc.cluster.local"}, Options: []string{"ndots:5"}}})
	if got, want := string(f["hostname"]), long[:63]+"\n"; got != want {
		t.Errorf("hostname = %q, want the name cut to 63: %q", got, want)
	}
	if !strings.Contains(string(f["hosts"]), "127.0.1.1\t"+long[:63]+"\n") {
		t.Errorf("hosts = %q, want the hostname on 127.0.1.1", f["hosts"])
	}
	if got, want := string(f["resolv.conf"]), "search acme.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"; got != want {
		t.Errorf("resolv.conf = %q, want %q", got, want)
	}
	if got := Hostname(&runtimev1.SandboxConfig{Name: "pod", Hostname: "web"}); got != "web" {
		t.Errorf("Hostname with one set = %q, want web", got)
	}
}

func TestCheckResources(t *testing.T) {
	for _, tc := range []struct {
		r    *runtimev1.Resources
		want string // "" = accepted
	}{
		{nil, ""},
		{&runtimev1.Resources{CpuMillis: 500, MemoryBytes: 64 << 20, Pids: 128}, ""},
		{&runtimev1.Resources{Pids: -1}, "config.resources.pids: -1 is negative"},
		{&runtimev1.Resources{MemoryBytes: 1 << 20}, "config.resources.memory_bytes: 1048576 is below the minimum of 4 MiB"},
	} {
		err := CheckResources("config.resources", tc.r)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckResources(%v) = %v, want %q", tc.r, err, tc.want)
		}
	}
}
