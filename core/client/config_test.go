package client

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-dev/paddock/core/errdefs"
)

func TestParseConfig(t *testing.T) {
	cases := []struct {
		name, in, field string
	}{
		{"valid", "kind: Config\nserver: https://127.0.0.1:6443\ntoken: a.b\n", ""},
		{"wrong kind", "kind: Pod\nserver: https://x\ntoken: a.b\n", "kind"},
		{"bad server", "kind: Config\nserver: ftp://x\ntoken: a.b\n", "server"},
		{"no token", "kind: Config\nserver: https://x:1\n", "token"},
		{"unknown field", "kind: Config\nserver: https://x:1\ntoken: a.b\ntokn: c\n", ""},
		{"malformed", "kind: [\n", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tc.in))
			if tc.name == "valid" {
				if err != nil || cfg.Server != "https://127.0.0.1:6443" {
					t.Fatalf("ParseConfig = %+v, %v", cfg, err)
				}
				return
			}
			if !errors.Is(err, errdefs.ErrBadRequest) {
				t.Fatalf("ParseConfig(%q) = %v, want a bad-request error", tc.in, err)
			}
			if tc.field != "" && errdefs.FieldOf(err) != tc.field {
				t.Errorf("ParseConfig(%q) field = %q, want %q", tc.in, errdefs.FieldOf(err), tc.field)
			}
		})
	}
}

func TestConfigWriteLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "config")
	in := &Config{Server: "https://127.0.0.1:1", Token: "id.secret", Tenant: "acme", Role: "edit"}
	if err := in.Write(path); err != nil {
		t.Fatal(err)
	}
	out, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if *out != *in {
		t.Errorf("LoadConfig(Write(cfg)) = %+v, want %+v", out, in)
	}
	_, err = LoadConfig(filepath.Join(t.TempDir(), "missing"))
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "PADDOCK_CONFIG") {
		t.Errorf("LoadConfig(missing) = %v, want not found saying how to point at a config", err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("kind: Config\nserver: https://127.0.0.1:6443\ntoken: a.b\n"))
	f.Add([]byte(`{"kind":"Config","server":"http://[::1]:1","token":"x","tenant":"t"}`))
	f.Add([]byte("kind: Config\nserver: https://%zz\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data)
		if err != nil {
			if !errors.Is(err, errdefs.ErrBadRequest) {
				t.Fatalf("ParseConfig error %v is not a bad-request class", err)
			}
			return
		}
		b, err := cfg.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseConfig(b)
		if err != nil || *again != *cfg {
			t.Fatalf("ParseConfig(Marshal(cfg)) = %+v, %v; want %+v", again, err, cfg)
		}
	})
}
