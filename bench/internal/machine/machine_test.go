package machine

import (
	"strings"
	"testing"
)

// TestDescribe checks that this machine's description is filled in from
// /proc (every Paddock machine is Linux).
func TestDescribe(t *testing.T) {
	m := Describe(t.Context())
	if m.NProc < 1 || m.GOMAXPROCS < 1 {
		t.Errorf("NProc %d, GOMAXPROCS %d; want both at least 1", m.NProc, m.GOMAXPROCS)
	}
	for name, v := range map[string]string{"Kernel": m.Kernel, "MemTotal": m.MemTotal, "Affinity": m.Affinity, "LoadBefore": m.LoadBefore, "GoVersion": m.GoVersion} {
		if v == "" || strings.HasPrefix(v, "unknown") {
			t.Errorf("%s = %q, want it read from the machine", name, v)
		}
	}
	if len(strings.Fields(LoadAvg())) != 3 {
		t.Errorf("LoadAvg() = %q, want three numbers", LoadAvg())
	}
}
