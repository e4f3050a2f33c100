// Package report records the results of a conformance run and writes them
// as a readable summary, JUnit XML (junit.xml, for CI systems) and JSON
// (results.json, for tools). It knows nothing about what was tested.
package report

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Status is the outcome of one case.
type Status string

// Outcomes.
const (
	Pass Status = "pass"
	Fail Status = "fail"
	// Skip is allowed only when the plugin does not advertise the
	// capability a case needs; Reason says which.
	Skip Status = "skip"
)

// Result is the outcome of one case.
type Result struct {
	ID         string        `json:"id"`
	Name       string        `json:"name"`
	Level      string        `json:"level"`   // MUST or SHOULD
	Profile    string        `json:"profile"` // core, sandboxed, feature:...
	Capability string        `json:"capability,omitempty"`
	Anchor     string        `json:"anchor,omitempty"`
	Status     Status        `json:"status"`
	Reason     string        `json:"reason,omitempty"` // why it failed or was skipped
	Leaks      []string      `json:"leaks,omitempty"`  // residue found after the case
	Log        []string      `json:"log,omitempty"`
	Duration   time.Duration `json:"durationNs"`
}

// Report is a whole run.
type Report struct {
	Suite     string    `json:"suite"` // e.g. "runtime"
	Plugin    string    `json:"plugin"`
	Version   string    `json:"pluginVersion,omitempty"`
	Profile   string    `json:"profile"`
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished"`
	Results   []Result  `json:"results"`
	Certified bool      `json:"certifiable"`
}

// Counts returns how many cases passed, failed and were skipped.
func (r *Report) Counts() (pass, fail, skip int) {
	for _, res := range r.Results {
		switch res.Status {
		case Pass:
			pass++
		case Fail:
			fail++
		case Skip:
			skip++
		}
	}
	return pass, fail, skip
}

// Finish computes whether the run is certifiable: nothing failed and no
// MUST case of the claimed profile was skipped.
func (r *Report) Finish(now time.Time) {
	r.Finished = now
	r.Certified = true
	for _, res := range r.Results {
		if res.Status == Fail || (res.Status == Skip && res.Level == "MUST" && (res.Profile == "core" || res.Profile == r.Profile)) {
			r.Certified = false
		}
	}
}

// WriteSummary writes a human-readable summary: one line per case and the
// failures in full.
func (r *Report) WriteSummary(w io.Writer) {
	fmt.Fprintf(w, "Conformance: %s plugin %s %s, profile %s\n\n", r.Suite, r.Plugin, r.Version, r.Profile)
	for _, res := range r.Results {
		mark := map[Status]string{Pass: "PASS", Fail: "FAIL", Skip: "SKIP"}[res.Status]
		fmt.Fprintf(w, "  %-4s %-10s %s (%s)", mark, res.ID, res.Name, res.Duration.Round(time.Millisecond))
		if res.Status == Skip {
			fmt.Fprintf(w, ": %s", res.Reason)
		}
		fmt.Fprintln(w)
	}
	var failed []Result
	for _, res := range r.Results {
		if res.Status == Fail {
			failed = append(failed, res)
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(w, "\nFailures:\n")
		for _, res := range failed {
			fmt.Fprintf(w, "\n--- %s %s\n    %s\n", res.ID, res.Name, strings.ReplaceAll(res.Reason, "\n", "\n    "))
			for _, l := range res.Leaks {
				fmt.Fprintf(w, "    leaked: %s\n", l)
			}
		}
	}
	pass, fail, skip := r.Counts()
	fmt.Fprintf(w, "\n%d passed, %d failed, %d skipped\n", pass, fail, skip)
	if !r.Certified {
		fmt.Fprintln(w, "not certifiable: a case failed or a MUST case of the profile was skipped")
	}
}

// junit is the JUnit XML shape CI systems read.
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes the report as JUnit XML.
func (r *Report) WriteJUnit(w io.Writer) error {
	pass, fail, skip := r.Counts()
	s := junitSuite{
		Name:     "paddock-conformance-" + r.Suite,
		Tests:    pass + fail + skip,
		Failures: fail,
		Skipped:  skip,
		Time:     seconds(r.Finished.Sub(r.Started)),
	}
	for _, res := range r.Results {
		c := junitCase{Name: res.ID + " " + res.Name, Classname: r.Suite + "." + res.Profile, Time: seconds(res.Duration), SystemOut: strings.Join(res.Log, "\n")}
		switch res.Status {
		case Fail:
			text := res.Reason
			if len(res.Leaks) > 0 {
				text += "\nleaked: " + strings.Join(res.Leaks, "\nleaked: ")
			}
			c.Failure = &junitMessage{Message: firstLine(res.Reason), Text: text}
		case Skip:
			c.Skipped = &junitMessage{Message: res.Reason}
		}
		s.Cases = append(s.Cases, c)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	return enc.Encode(junitSuites{Suites: []junitSuite{s}})
}

// WriteFiles writes junit.xml and results.json into dir.
func (r *Report) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var x strings.Builder
	if err := r.WriteJUnit(&x); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "junit.xml"), []byte(x.String()), 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644)
}

// Sort orders the results by id.
func (r *Report) Sort() {
	sort.SliceStable(r.Results, func(i, j int) bool { return r.Results[i].ID < r.Results[j].ID })
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
