package pluginhost

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

func TestNegotiate(t *testing.T) {
	tests := []struct {
		name         string
		host, plugin []string
		want         string
		ok           bool
	}{
		{"same", []string{"v1"}, []string{"v1"}, "v1", true},
		{"newest both speak", []string{"v3", "v2", "v1"}, []string{"v1", "v2"}, "v2", true},
		{"plugin newer", []string{"v1"}, []string{"v2", "v1"}, "v1", true},
		{"none", []string{"v1"}, []string{"v9"}, "", false},
		{"plugin speaks nothing", []string{"v1"}, nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, ok := negotiate(tt.host, tt.plugin); got != tt.want || ok != tt.ok {
				t.Errorf("negotiate(%v, %v) = %q, %v; want %q, %v", tt.host, tt.plugin, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// logged runs f with a lineEmitter into a JSON handler and returns the
// records it wrote.
func logged(t *testing.T, f func(e *lineEmitter)) []map[string]any {
	t.Helper()
	var buf bytes.Buffer
	h := slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug - 4}).WithAttrs([]slog.Attr{slog.String("plugin", "p")})
	f(&lineEmitter{h: h, stream: "stderr"})
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestPluginLogLines(t *testing.T) {
	var line bytes.Buffer
	hclog.New(&hclog.LoggerOptions{Name: "runc", Output: &line, JSONFormat: true, Level: hclog.Trace}).
		Warn("container exited", "id", "c1", "code", 137)
	got := logged(t, func(e *lineEmitter) {
		e.emit(line.Bytes())
		e.emit([]byte("plain words"))
		e.emit([]byte("[ERROR] old style"))
		e.emit([]byte("panic: boom"))
		e.emit([]byte("goroutine 1 [running]:"))
		e.emit([]byte("   "))
	})
	want := []map[string]any{
		{"level": "WARN", "msg": "container exited", "plugin": "p", "module": "runc", "id": "c1", "code": float64(137)},
		{"level": "INFO", "msg": "plugin output", "plugin": "p", "stream": "stderr", "line": "plain words"},
		{"level": "ERROR", "msg": "plugin output", "line": "[ERROR] old style"},
		{"level": "ERROR", "msg": "plugin output", "line": "panic: boom"},
		{"level": "ERROR", "msg": "plugin output", "line": "goroutine 1 [running]:"},
	}
	if len(got) != len(want) {
		t.Fatalf("emitted %d records, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		for k, v := range want[i] {
			if got[i][k] != v {
				t.Errorf("record %d: %s = %v, want %v (record %v)", i, k, got[i][k], v, got[i])
			}
		}
	}
	// The plugin's own time is kept.
	if ts, _ := time.Parse(time.RFC3339Nano, got[0]["time"].(string)); time.Since(ts) > time.Minute {
		t.Errorf("time = %v", got[0]["time"])
	}
}

func TestHCLogAdapter(t *testing.T) {
	var buf bytes.Buffer
	h := slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})
	var l hclog.Logger = newHCLogAdapter(h, "go-plugin", slog.LevelWarn)
	l = l.Named("stdio").With("id", "x")
	l.Debug("hidden")
	l.Info("starting", "pid", 7, "plugin", "/bin/p")
	l.Error("plugin process exited", "error", "exit status 1")
	if l.IsDebug() || !l.IsInfo() || l.GetLevel() != hclog.Info {
		t.Errorf("IsDebug, IsInfo, GetLevel = %v, %v, %v; want false, true, info", l.IsDebug(), l.IsInfo(), l.GetLevel())
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("logged %q, want 2 lines", lines)
	}
	var info, exited map[string]any
	json.Unmarshal([]byte(lines[0]), &info)
	json.Unmarshal([]byte(lines[1]), &exited)
	if info["msg"] != "starting" || info["logger"] != "go-plugin.stdio" || info["id"] != "x" || info["pid"] != float64(7) || info["path"] != "/bin/p" {
		t.Errorf("info record = %v", info)
	}
	if exited["level"] != "WARN" {
		t.Errorf("an error above the adapter's ceiling logged at %v, want WARN", exited["level"])
	}
}
