package containerd

import (
	"errors"
	"strings"
	"testing"

	"github.com/paddock-dev/paddock/core/errdefs"
	"golang.org/x/sys/unix"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name, raw string
		field     string // of the error; "" for success
		check     func(*Config) string
	}{
		{name: "defaults", raw: `{"address":"/run/c.sock"}`, check: func(c *Config) string {
			if c.NamespacePrefix != "paddock-" || c.ImageNamespace != "paddock" || c.Snapshotter != "overlayfs" ||
				c.Runtimes["runc"] != "io.containerd.runc.v2" || c.LogMaxBytes != DefaultLogMaxBytes ||
				len(c.AllowedMountRoots) != 1 || c.AllowedMountRoots[0] != "/state/volumes" || c.namespace("acme") != "paddock-acme" {
				return "defaults not filled in"
			}
			return ""
		}},
		{name: "unix scheme", raw: `{"address":"unix:///run/c.sock"}`, check: func(c *Config) string {
			if c.Address != "/run/c.sock" {
				return "address " + c.Address
			}
			return ""
		}},
		{name: "no address", raw: `{}`, field: "address"},
		{name: "relative address", raw: `{"address":"c.sock"}`, field: "address"},
		{name: "unknown field", raw: `{"address":"/c.sock","runcPath":"x"}`},
		{name: "bad prefix", raw: `{"address":"/c.sock","namespacePrefix":"a/b"}`, field: "namespacePrefix"},
		{name: "image namespace a tenant's", raw: `{"address":"/c.sock","imageNamespace":"paddock-images"}`, field: "imageNamespace"},
		{name: "bad runtime", raw: `{"address":"/c.sock","runtimes":{"runc":"runc"}}`, field: "runtimes"},
		{name: "root mount root", raw: `{"address":"/c.sock","allowedMountRoots":["/"]}`, field: "allowedMountRoots[0]"},
		{name: "small log", raw: `{"address":"/c.sock","logMaxBytes":10}`, field: "logMaxBytes"},
		{name: "unknown default handler", raw: `{"address":"/c.sock","defaultHandler":"kata"}`, field: "defaultHandler"},
		{name: "runsc handler without runsc", raw: `{"address":"/c.sock","runtimes":{"runsc":"io.containerd.runsc.v1"},"defaultHandler":"runsc","runscPath":"/no/such/runsc"}`, field: "runscPath"},
		{name: "bad platform", raw: `{"address":"/c.sock","runscPlatform":"kvm"}`, field: "runscPlatform"},
		{name: "runsc default handler", raw: `{"address":"/c.sock","runtimes":{"runc":"io.containerd.runc.v2","runsc":"io.containerd.runsc.v1"},"defaultHandler":"runsc","runscPath":"/bin/true"}`, check: func(c *Config) string {
			if rt, err := c.runtimeFor(""); err != nil || rt != "io.containerd.runsc.v1" || c.RunscPath != "/bin/true" || c.RunscPlatform != "systrap" {
				return "the empty handler is not runsc's runtime, or runsc is not /bin/true on systrap"
			}
			return ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfig([]byte(tt.raw), "/state")
			if tt.check != nil {
				if err != nil {
					t.Fatalf("parseConfig(%s) = %v", tt.raw, err)
				}
				if msg := tt.check(cfg); msg != "" {
					t.Errorf("parseConfig(%s): %s: %+v", tt.raw, msg, cfg)
				}
				return
			}
			if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) || errdefs.FieldOf(err) != tt.field {
				t.Errorf("parseConfig(%s) = %v (field %q), want an invalid-argument error on field %q", tt.raw, err, errdefs.FieldOf(err), tt.field)
			}
		})
	}
}

func TestSignalNumber(t *testing.T) {
	tests := []struct {
		in   string
		want unix.Signal
	}{
		{"", unix.SIGTERM}, {"SIGUSR1", unix.SIGUSR1}, {"usr1", unix.SIGUSR1}, {"KILL", unix.SIGKILL},
		{"9", unix.SIGKILL}, {"SIGRTMIN", 34}, {"SIGRTMIN+3", 37}, {"SIGRTMAX-1", 63},
		{"SIGNOPE", 0}, {"0", 0}, {"65", 0}, {"SIGRTMIN+x", 0},
	}
	for _, tt := range tests {
		got, err := signalNumber("signal", tt.in, unix.SIGTERM)
		if tt.want == 0 {
			if err == nil || !strings.Contains(err.Error(), "signal") {
				t.Errorf("signalNumber(%q) = %v, %v, want an error naming the field", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("signalNumber(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
		}
	}
}
