package verify

import (
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"strings"
)

// JUnit XML, as CI systems read it (Jenkins, GitLab, GitHub test
// reporters): one test suite per run, one test case per check. A held
// check passes, a failed one is a <failure>, an inconclusive one an
// <error> (the run could not tell), and one with nothing to check is
// <skipped>.
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	Props    []junitProp `xml:"properties>property,omitempty"`
	Cases    []junitCase `xml:"testcase"`
}

type junitProp struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Error     *junitMessage `xml:"error,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
	Output    string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Body    string `xml:",chardata"`
}

// WriteJUnit writes r's checks (thresholds included) as JUnit XML.
func WriteJUnit(w io.Writer, r *Report) error {
	suite := junitSuite{
		Name:  "paytest",
		Time:  fmt.Sprintf("%.3f", r.DurationSeconds),
		Props: []junitProp{{"verdict", r.Verdict}, {"seed", fmt.Sprint(r.Seed)}, {"profile", r.Profile}},
	}
	if r.Profile != "" {
		suite.Name = "paytest." + r.Profile
	}
	for _, c := range r.Checks {
		tc := junitCase{Name: c.Name, Classname: suite.Name, Time: "0", Output: junitOutput(c)}
		msg := c.Figure
		switch c.Status {
		case StatusHeld:
		case StatusFailed:
			tc.Failure = &junitMessage{Message: msg, Type: "violated", Body: junitBody(c)}
			suite.Failures++
		case StatusInconclusive:
			tc.Error = &junitMessage{Message: msg, Type: "inconclusive", Body: junitBody(c)}
			suite.Errors++
		default:
			if c.Detail != "" {
				msg = c.Detail
			}
			tc.Skipped = &junitMessage{Message: msg}
			suite.Skipped++
		}
		suite.Cases = append(suite.Cases, tc)
	}
	suite.Tests = len(suite.Cases)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(junitSuites{Suites: []junitSuite{suite}}); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// WriteJUnitFile writes r as JUnit XML to path.
func WriteJUnitFile(path string, r *Report) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := WriteJUnit(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func junitOutput(c Check) string {
	s := c.Figure
	if c.Evidence != "" {
		s += " [" + c.Evidence + "]"
	}
	return s
}

func junitBody(c Check) string {
	var b strings.Builder
	b.WriteString(c.Detail)
	for _, cx := range c.Counterexamples {
		fmt.Fprintf(&b, "\nop %d key %s: %s", cx.Op, cx.Key, cx.Why)
	}
	if more := c.CounterexamplesTotal - len(c.Counterexamples); more > 0 {
		fmt.Fprintf(&b, "\n... and %d more", more)
	}
	return b.String()
}
