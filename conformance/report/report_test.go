package report

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sample() *Report {
	r := &Report{Suite: "runtime", Plugin: "runc", Version: "1", Profile: "core", Started: time.Unix(0, 0)}
	r.Results = []Result{
		{ID: "RT-CT-003", Name: "Wait", Level: "MUST", Profile: "core", Status: Fail, Reason: "exit 0, want 43\nmore", Leaks: []string{"mount /x"}},
		{ID: "RT-CT-001", Name: "Create", Level: "MUST", Profile: "core", Status: Pass},
		{ID: "RT-EX-004", Name: "TTY", Level: "MUST", Profile: "feature:exec-tty", Status: Skip, Reason: "the plugin does not advertise capability exec_tty"},
	}
	r.Sort()
	r.Finish(time.Unix(2, 0))
	return r
}

func TestReport(t *testing.T) {
	r := sample()
	if p, f, s := r.Counts(); p != 1 || f != 1 || s != 1 || r.Certified {
		t.Errorf("Counts = %d %d %d certified %v, want 1 1 1 false", p, f, s, r.Certified)
	}
	if r.Results[0].ID != "RT-CT-001" {
		t.Errorf("Sort: first %s", r.Results[0].ID)
	}
	var sum strings.Builder
	r.WriteSummary(&sum)
	for _, want := range []string{"PASS RT-CT-001", "FAIL RT-CT-003", "SKIP RT-EX-004", "leaked: mount /x", "1 passed, 1 failed, 1 skipped", "not certifiable"} {
		if !strings.Contains(strings.Join(strings.Fields(sum.String()), " "), want) {
			t.Errorf("summary lacks %q:\n%s", want, sum.String())
		}
	}
	dir := t.TempDir()
	if err := r.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	var ju junitSuites
	b, _ := os.ReadFile(filepath.Join(dir, "junit.xml"))
	if err := xml.Unmarshal(b, &ju); err != nil || len(ju.Suites) != 1 || len(ju.Suites[0].Cases) != 3 || ju.Suites[0].Failures != 1 || ju.Suites[0].Skipped != 1 {
		t.Errorf("junit.xml = %+v, %v", ju, err)
	}
	var back Report
	b, _ = os.ReadFile(filepath.Join(dir, "results.json"))
	if err := json.Unmarshal(b, &back); err != nil || len(back.Results) != 3 || back.Results[1].Status != Fail {
		t.Errorf("results.json = %+v, %v", back, err)
	}
}

func TestCertifiable(t *testing.T) {
	r := &Report{Profile: "core", Results: []Result{{Level: "MUST", Profile: "core", Status: Pass}, {Level: "MUST", Profile: "sandboxed", Status: Skip}}}
	r.Finish(time.Now())
	if !r.Certified {
		t.Error("a core run with only a sandboxed case skipped is not certifiable")
	}
	r.Results = append(r.Results, Result{Level: "MUST", Profile: "core", Status: Skip})
	r.Finish(time.Now())
	if r.Certified {
		t.Error("a skipped core MUST case still certifies")
	}
}
