package bridge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"

	"github.com/paddock-dev/paddock/core/errdefs"
)

// Config is the plugin's configuration, the JSON that SetConfig receives.
// The zero value (or an empty document) means every default.
type Config struct {
	// Bridge is the Linux bridge the pods' host sides join. Default
	// "paddock0".
	Bridge string `json:"bridge,omitempty"`
	// Table is the name of the plugin's nftables tables (one of family
	// inet, one of family bridge). Default "paddock-bridge".
	Table string `json:"table,omitempty"`
	// MTU of the bridge and the pods' interfaces; 0 takes SetupNode's,
	// else the uplink's (the interface of the default route), else 1500.
	MTU int `json:"mtu,omitempty"`
	// Hairpin lets a pod reach itself through a service address (the
	// bridge sends a frame back out of the port it came in). Default true.
	Hairpin *bool `json:"hairpin,omitempty"`
	// Masquerade rewrites the source of pod traffic leaving the node for
	// outside the cluster and service ranges. Default true.
	Masquerade *bool `json:"masquerade,omitempty"`
}

// Defaults.
const (
	DefaultBridge = "paddock0"
	DefaultTable  = "paddock-bridge"
)

// settings is a Config with its defaults filled in.
type settings struct {
	Bridge     string
	Table      string
	MTU        int
	Hairpin    bool
	Masquerade bool
}

// configSchema is the JSON Schema of Config, answered by Info.
const configSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "paddock-net-bridge configuration",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "bridge": {
      "description": "The Linux bridge pods join. Default paddock0.",
      "type": "string", "pattern": "^[A-Za-z0-9_.-]{1,15}$"
    },
    "table": {
      "description": "Name of the plugin's nftables tables (families inet and bridge). Default paddock-bridge.",
      "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"
    },
    "mtu": {
      "description": "MTU of the bridge and pod interfaces. 0: SetupNode's, else the uplink's (interface of the default route), else 1500.",
      "type": "integer", "minimum": 0, "maximum": 65535
    },
    "hairpin": {
      "description": "Let a pod reach itself through a service address. Default true.",
      "type": "boolean"
    },
    "masquerade": {
      "description": "Masquerade pod traffic leaving for outside the cluster and service ranges. Default true.",
      "type": "boolean"
    }
  }
}`

var (
	ifnameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)
	tableRE  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// minMTU is the smallest MTU accepted: IPv4's minimum.
const minMTU = 576

// parseConfig decodes and validates raw, rejecting unknown fields, and
// fills in the defaults. Errors are ErrInvalidArgument naming the field.
func parseConfig(raw []byte) (settings, error) {
	var cfg Config
	if len(bytes.TrimSpace(raw)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return settings{}, errdefs.New(errdefs.ErrInvalidArgument, "config: "+err.Error())
		}
		if _, err := dec.Token(); err != io.EOF {
			return settings{}, errdefs.New(errdefs.ErrInvalidArgument, "config: trailing data after the JSON object")
		}
	}
	s := settings{Bridge: DefaultBridge, Table: DefaultTable, MTU: cfg.MTU, Hairpin: true, Masquerade: true}
	if cfg.Bridge != "" {
		if !ifnameRE.MatchString(cfg.Bridge) || cfg.Bridge == "." || cfg.Bridge == ".." {
			return settings{}, errdefs.Field(errdefs.ErrInvalidArgument, "bridge", fmt.Sprintf("%q is not an interface name (1-15 of letters, digits, _ . -)", cfg.Bridge))
		}
		s.Bridge = cfg.Bridge
	}
	if cfg.Table != "" {
		if !tableRE.MatchString(cfg.Table) {
			return settings{}, errdefs.Field(errdefs.ErrInvalidArgument, "table", fmt.Sprintf("%q is not a table name (1-64 of letters, digits, _ -)", cfg.Table))
		}
		s.Table = cfg.Table
	}
	if cfg.MTU != 0 && (cfg.MTU < minMTU || cfg.MTU > 65535) {
		return settings{}, errdefs.Field(errdefs.ErrInvalidArgument, "mtu", fmt.Sprintf("%d is out of range: 0 (automatic) or %d to 65535", cfg.MTU, minMTU))
	}
	if cfg.Hairpin != nil {
		s.Hairpin = *cfg.Hairpin
	}
	if cfg.Masquerade != nil {
		s.Masquerade = *cfg.Masquerade
	}
	return s, nil
}
