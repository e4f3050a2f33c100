package cli

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/client"
)

func TestExecArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		dash    int
		pod     string
		command []string
		wantErr string
	}{
		{name: "pod and command", args: []string{"web", "ls", "-l"}, dash: 1, pod: "web", command: []string{"ls", "-l"}},
		{name: "nothing", args: nil, dash: -1, wantErr: "want a pod: paddock exec POD"},
		{name: "no pod", args: []string{"ls"}, dash: 0, wantErr: "want a pod"},
		{name: "no command", args: []string{"web"}, dash: -1, wantErr: "want a command after --"},
		{name: "empty after dash", args: []string{"web"}, dash: 1, wantErr: "want a command after --"},
		{name: "no dash", args: []string{"web", "ls", "/"}, dash: -1, wantErr: "put -- between the pod and the command: paddock exec web -- ls /"},
		{name: "two pods", args: []string{"web", "db", "ls"}, dash: 2, wantErr: `want one pod before --, got ["web" "db"]: if "web" is a tenant, name it with --tenant web (in exec, -t is --tty`},
		{name: "three pods", args: []string{"a", "b", "c", "ls"}, dash: 3, wantErr: `want one pod before --, got ["a" "b" "c"]: paddock exec POD`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod, command, err := execArgs(tt.args, tt.dash)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("execArgs(%q, %d) error = %v, want one starting %q", tt.args, tt.dash, err, tt.wantErr)
				}
				return
			}
			if err != nil || pod != tt.pod || !reflect.DeepEqual(command, tt.command) {
				t.Errorf("execArgs(%q, %d) = %q, %q, %v, want %q, %q", tt.args, tt.dash, pod, command, err, tt.pod, tt.command)
			}
		})
	}
}

// TestExecFlags checks kubectl's -it on exec while -t stays the tenant
// elsewhere.
func TestExecFlags(t *testing.T) {
	root := NewRoot(&bytes.Buffer{}, &bytes.Buffer{})
	cmd, rest, err := root.Find([]string{"exec", "-it", "web", "--tenant", "acme", "-c", "side", "--", "sh", "-c", "ls -l"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatalf("ParseFlags(%q) = %v", rest, err)
	}
	get := func(name string) string { return cmd.Flags().Lookup(name).Value.String() }
	if get("tty") != "true" || get("stdin") != "true" || get("tenant") != "acme" || get("container") != "side" {
		t.Errorf("flags tty=%s stdin=%s tenant=%s container=%s, want true true acme side", get("tty"), get("stdin"), get("tenant"), get("container"))
	}
	pod, command, err := execArgs(cmd.Flags().Args(), cmd.ArgsLenAtDash())
	if err != nil || pod != "web" || !reflect.DeepEqual(command, []string{"sh", "-c", "ls -l"}) {
		t.Errorf("args = %q %q %v, want web [sh -c ls -l]", pod, command, err)
	}

	logs, rest, err := root.Find([]string{"logs", "web", "-t", "acme", "-f"})
	if err != nil {
		t.Fatal(err)
	}
	if err := logs.ParseFlags(rest); err != nil {
		t.Fatal(err)
	}
	if v := logs.Flags().Lookup("tenant").Value.String(); v != "acme" {
		t.Errorf("logs -t acme: tenant %q, want acme", v)
	}
}

// TestExecUsageErrors runs the command line: the errors come before any
// configuration is read.
func TestExecUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"exec", "web", "ls", "-l"}, "put -- before the command"},
		{[]string{"exec", "web", "ls"}, "put -- between the pod and the command: paddock exec web -- ls"},
		{[]string{"exec", "web"}, "want a command after --"},
		{[]string{"logs"}, "accepts 1 arg(s), received 0"},
		{[]string{"logs", "web", "--tail", "-2"}, "--tail -2: want a number of lines"},
		{[]string{"logs", "web", "--since", "5m", "--since-time", "2026-01-01T00:00:00Z"}, "--since and --since-time: give at most one"},
		{[]string{"logs", "web", "--since-time", "yesterday"}, `--since-time "yesterday": want an RFC 3339 time`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			root := NewRoot(&bytes.Buffer{}, &bytes.Buffer{})
			root.SetArgs(append(tc.args, "--config", "/nonexistent/config"))
			err := root.Execute()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("paddock %q = %v, want an error containing %q", tc.args, err, tc.want)
			}
		})
	}
}

func TestLogsOptions(t *testing.T) {
	ten := int64(10)
	zero := int64(0)
	at := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		f    logsFlags
		want client.LogOptions
	}{
		{"defaults", logsFlags{tail: -1}, client.LogOptions{}},
		{"all", logsFlags{container: "c", follow: true, timestamps: true, previous: true, since: 5 * time.Minute, tail: 10},
			client.LogOptions{Container: "c", Follow: true, Timestamps: true, Previous: true, Since: 5 * time.Minute, TailLines: &ten}},
		{"tail 0", logsFlags{tail: 0}, client.LogOptions{TailLines: &zero}},
		{"since time", logsFlags{tail: -1, sinceTime: "2026-01-02T15:04:05Z"}, client.LogOptions{SinceTime: at}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.f.options()
			if err != nil || fmt.Sprint(got.TailLines != nil) != fmt.Sprint(tt.want.TailLines != nil) ||
				(got.TailLines != nil && *got.TailLines != *tt.want.TailLines) {
				t.Fatalf("options(%+v) = %+v, %v, want %+v", tt.f, got, err, tt.want)
			}
			got.TailLines, tt.want.TailLines = nil, nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("options(%+v) = %+v, want %+v", tt.f, got, tt.want)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	if code, silent := exitCode(fmt.Errorf("wrapped: %w", &ExitError{Code: 42})); code != 42 || !silent {
		t.Errorf("exitCode(ExitError 42) = %d, %v, want 42, true", code, silent)
	}
	if code, silent := exitCode(fmt.Errorf("boom")); code != 1 || silent {
		t.Errorf("exitCode(other) = %d, %v, want 1, false", code, silent)
	}
}
