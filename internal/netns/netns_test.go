package netns

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("network namespaces need root; CI runs as root")
		}
		t.Skip("network namespaces need root")
	}
}

// A listener opened inside a namespace is reachable from inside it, a
// host listener is not; Remove makes the path go away.
func TestCreateDoRemove(t *testing.T) {
	requireRoot(t)
	path := filepath.Join(t.TempDir(), "ns")
	if err := Create(path); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := Do(path, func() (err error) { ln, err = net.Listen("tcp", "127.0.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	if err := Do(path, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Errorf("dial inside the namespace (loopback up): %v", err)
	}
	// The other way round: a host listener is not reachable from inside.
	host, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	if err := Do(path, func() error {
		c, err := net.Dial("tcp", host.Addr().String())
		if err == nil {
			c.Close()
		}
		return err
	}); err == nil {
		t.Error("a host listener was reachable from inside the namespace")
	}
	if err := Create(path); err == nil {
		t.Error("Create over an existing namespace succeeded")
	}
	if err := Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("after Remove: %v, want not exist", err)
	}
	if err := Remove(path); err != nil {
		t.Errorf("second Remove = %v, want nil", err)
	}
}
