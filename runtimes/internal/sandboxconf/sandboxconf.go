// Package sandboxconf is what a sandbox's config means to every runtime
// plugin of Paddock's: the hostname its containers see, the files they
// share in /etc (hostname, hosts, resolv.conf), and the checks of the
// limits a sandbox or container asks for.
package sandboxconf

import (
	"fmt"
	"os"
	"strings"

	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// Hostname is the hostname the containers of c see: c's own, else the
// pod's name cut to 63 characters.
func Hostname(c *runtimev1.SandboxConfig) string {
	if c.GetHostname() != "" {
		return c.GetHostname()
	}
	return c.GetName()[:min(len(c.GetName()), 63)]
}

// Files are the files the containers of c share in /etc, by name.
func Files(c *runtimev1.SandboxConfig) map[string][]byte {
	h := Hostname(c)
	return map[string][]byte{
		"hostname":    []byte(h + "\n"),
		"hosts":       []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + h + "\n"),
		"resolv.conf": resolvConf(c.GetDns()),
	}
}

// resolvConf renders resolv.conf for d; without DNS config it is the
// host's.
func resolvConf(d *runtimev1.DNSConfig) []byte {
	if len(d.GetServers())+len(d.GetSearches())+len(d.GetOptions()) == 0 {
		b, _ := os.ReadFile("/etc/resolv.conf")
		return b
	}
	var b strings.Builder
	if len(d.Searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(d.Searches, " "))
	}
	for _, s := range d.Servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(d.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(d.Options, " "))
	}
	return []byte(b.String())
}

// CheckResources rejects negative limits and a memory limit too small to
// start a process in; field names r in the error.
func CheckResources(field string, r *runtimev1.Resources) error {
	if r == nil {
		return nil
	}
	for name, v := range map[string]int64{"cpu_millis": r.CpuMillis, "cpu_shares_millis": r.CpuSharesMillis, "memory_bytes": r.MemoryBytes, "pids": r.Pids} {
		if v < 0 {
			return errdefs.Field(errdefs.ErrInvalidArgument, field+"."+name, fmt.Sprintf("%d is negative; use 0 for no limit", v))
		}
	}
	if r.MemoryBytes > 0 && r.MemoryBytes < 4<<20 {
		return errdefs.Field(errdefs.ErrInvalidArgument, field+".memory_bytes", fmt.Sprintf("%d is below the minimum of 4 MiB", r.MemoryBytes))
	}
	return nil
}
