package cli

import (
	"strings"
	"testing"
)

func TestWithMountRoot(t *testing.T) {
	for _, tc := range []struct {
		name, config, want, wantErr string
	}{
		{name: "empty object", config: `{}`, want: `{"allowedMountRoots":["/v"]}`},
		{name: "other fields kept", config: `{"logMaxBytes":1048576}`, want: `{"allowedMountRoots":["/v"],"logMaxBytes":1048576}`},
		{name: "appended to the roots", config: `{"allowedMountRoots":["/srv"]}`, want: `{"allowedMountRoots":["/srv","/v"]}`},
		{name: "not an object", config: `[1]`, wantErr: "want a JSON object"},
		{name: "null", config: `null`, wantErr: "want a JSON object"},
		{name: "roots not a list", config: `{"allowedMountRoots":"/srv"}`, wantErr: "allowedMountRoots: want a list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := withMountRoot([]byte(tc.config), "/v")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("withMountRoot(%s) = %s, %v; want an error containing %q", tc.config, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Errorf("withMountRoot(%s) = %s, %v; want %s", tc.config, got, err, tc.want)
			}
		})
	}
}

// Both suites' commands read the flags they share, and name the bad one.
func TestFlagErrors(t *testing.T) {
	for _, suite := range []string{"runtime", "network"} {
		for _, tc := range []struct {
			name    string
			args    []string
			wantErr string
		}{
			{"no plugin", nil, "--plugin: required"},
			{"bad regexp", []string{"--plugin", "/bin/true", "--focus", "("}, "--focus"},
			{"bad skip regexp", []string{"--plugin", "/bin/true", "--skip", "[a"}, "--skip"},
			{"missing config", []string{"--plugin", "/bin/true", "--plugin-config", "/nonexistent/cfg.json"}, "--plugin-config"},
			{"bad probe timeout", []string{"--plugin", "/bin/true", "--probe-timeout", "0s"}, "--probe-timeout"},
		} {
			if suite == "runtime" && tc.name == "bad probe timeout" {
				continue
			}
			t.Run(suite+"/"+tc.name, func(t *testing.T) {
				var out strings.Builder
				cmd := New(&out, &out)
				cmd.SetArgs(append([]string{suite}, tc.args...))
				cmd.SilenceUsage, cmd.SilenceErrors = true, true
				err := cmd.Execute()
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("%s %v = %v, want an error containing %q", suite, tc.args, err, tc.wantErr)
				}
			})
		}
	}
}

// --list prints every network case without launching anything.
func TestNetworkList(t *testing.T) {
	var out strings.Builder
	cmd := New(&out, &out)
	cmd.SetArgs([]string{"network", "--list"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"NP-VR-001", "NP-MT-001", "NP-RS-001", "advertises multiple_interfaces"} {
		if !strings.Contains(out.String(), id) {
			t.Errorf("--list output lacks %s:\n%s", id, out.String())
		}
	}
}
