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
