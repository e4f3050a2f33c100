package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/paddock-dev/paddock/core/errdefs"
	"sigs.k8s.io/yaml"
)

// Config is a client configuration file: where the API server is, how to
// trust it and the credential to present. `paddock server` writes one for
// the cluster admin (DATA_DIR/admin.conf); `paddock token create -o config`
// prints one for a tenant role.
type Config struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Server is the API server's base URL, https://HOST:PORT.
	Server string `json:"server"`
	// CertificateAuthority is the PEM of the CA that signed the server's
	// certificate.
	CertificateAuthority string `json:"certificateAuthority,omitempty"`
	// Token is the bearer token.
	Token string `json:"token"`
	// Tenant is the default tenant of tenant-scoped commands (the
	// credential's tenant for tenant roles).
	Tenant string `json:"tenant,omitempty"`
	// Role is the credential's role, for display.
	Role string `json:"role,omitempty"`
}

// ConfigKind is the kind of a client configuration file.
const ConfigKind = "Config"

// DefaultConfigPath returns where client commands look for their
// configuration: flag if set, else $PADDOCK_CONFIG, else ~/.paddock/config.
func DefaultConfigPath(flag string) string {
	if flag != "" {
		return flag
	}
	if p := os.Getenv("PADDOCK_CONFIG"); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".paddock", "config")
}

// LoadConfig reads and checks a configuration file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("no client config at %s: pass --config, set PADDOCK_CONFIG, or copy DATA_DIR/admin.conf there (paddock up writes it)", path))
		}
		return nil, fmt.Errorf("read client config: %w", err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("client config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes and checks a configuration (YAML or JSON), rejecting
// unknown fields.
func ParseConfig(b []byte) (*Config, error) {
	js, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, errdefs.New(errdefs.ErrBadRequest, "malformed YAML: "+err.Error())
	}
	var cfg Config
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return nil, errdefs.New(errdefs.ErrBadRequest, err.Error())
	}
	if cfg.Kind != ConfigKind {
		return nil, errdefs.Field(errdefs.ErrBadRequest, "kind", fmt.Sprintf("want %q, got %q", ConfigKind, cfg.Kind))
	}
	u, err := url.Parse(cfg.Server)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errdefs.Field(errdefs.ErrBadRequest, "server", fmt.Sprintf("invalid server %q: want https://HOST:PORT", cfg.Server))
	}
	if cfg.Token == "" {
		return nil, errdefs.Field(errdefs.ErrBadRequest, "token", "required")
	}
	return &cfg, nil
}

// Marshal returns the configuration as YAML.
func (c *Config) Marshal() ([]byte, error) {
	c.APIVersion, c.Kind = "paddock.dev/v1", ConfigKind
	return yaml.Marshal(c)
}

// Write writes the configuration to path with mode 0600, atomically.
func (c *Config) Write(path string) error {
	b, err := c.Marshal()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
