package e2e

import (
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// junitSuites is the part of ginkgo's JUnit report the summary reads.
type junitSuites struct {
	Suites []struct {
		Cases []junitCase `xml:"testcase"`
	} `xml:"testsuite"`
}

type junitCase struct {
	Name    string  `xml:"name,attr"`
	Status  string  `xml:"status,attr"`
	Time    float64 `xml:"time,attr"`
	Skipped *struct {
		Message string `xml:"message,attr"`
	} `xml:"skipped"`
	Failure *struct {
		Message string `xml:"message,attr"`
	} `xml:"failure"`
}

// conformanceSummary is what a run of the suite did with every spec its
// focus names: a spec counts once however many passes listed it.
type conformanceSummary struct {
	Passed, Failed []string
	// Skipped maps a spec to why it did not run.
	Skipped map[string]string
	// Failures maps a failed spec to the first line of its failure.
	Failures map[string]string
}

func (s conformanceSummary) Ran() int { return len(s.Passed) + len(s.Failed) }

// summarize reads every junit_*.xml in dir. A spec that ran in one pass
// and was filtered out of another counts as what it did where it ran.
// Failures outside the focus (a suite's setup) are failures too.
func summarize(dir, focus string) (conformanceSummary, error) {
	s := conformanceSummary{Skipped: map[string]string{}, Failures: map[string]string{}}
	reports, err := filepath.Glob(filepath.Join(dir, "junit_*.xml"))
	if err != nil || len(reports) == 0 {
		return s, fmt.Errorf("no JUnit report in %s (%v)", dir, err)
	}
	inFocus := regexp.MustCompile(focus)
	state := map[string]string{}
	for _, r := range reports {
		data, err := os.ReadFile(r)
		if err != nil {
			return s, err
		}
		var suites junitSuites
		if err := xml.Unmarshal(data, &suites); err != nil {
			return s, fmt.Errorf("%s: %w", r, err)
		}
		for _, suite := range suites.Suites {
			for _, c := range suite.Cases {
				name := strings.TrimPrefix(c.Name, "[It] ")
				focused := inFocus.MatchString(name)
				switch c.Status {
				case "passed":
					if focused && state[name] != "failed" {
						state[name] = "passed"
					}
				case "skipped", "pending":
					if focused && state[name] == "" {
						state[name] = "skipped"
						if reason := skipReason(name); reason != "" {
							s.Skipped[name] = reason
						} else if c.Skipped != nil && c.Skipped.Message != "skipped" && c.Skipped.Message != "" {
							s.Skipped[name] = c.Skipped.Message
						}
					}
				default:
					state[name] = "failed"
					if c.Failure != nil {
						s.Failures[name], _, _ = strings.Cut(c.Failure.Message, "\n")
					}
				}
			}
		}
	}
	for name, st := range state {
		switch st {
		case "passed":
			s.Passed = append(s.Passed, name)
			delete(s.Skipped, name)
		case "failed":
			s.Failed = append(s.Failed, name)
			delete(s.Skipped, name)
		}
	}
	// A spec in focus that no pass ran and no rule skipped: the run's own
	// filters left it out (a label, or a FOCUS narrower than the names).
	for name, st := range state {
		if _, ok := s.Skipped[name]; st == "skipped" && !ok {
			s.Skipped[name] = "not selected by this run's filters (labels, FOCUS)"
		}
	}
	sort.Strings(s.Passed)
	sort.Strings(s.Failed)
	return s, nil
}

// String is the whole summary: counts, then each failed, skipped and
// passed spec by name.
func (s conformanceSummary) String() string {
	b := s.brief()
	b.WriteString("\nPassed:\n")
	for _, name := range s.Passed {
		fmt.Fprintf(b, "- %s\n", name)
	}
	return b.String()
}

// Brief is the summary without the names of the specs that passed.
func (s conformanceSummary) Brief() string { return s.brief().String() }

func (s conformanceSummary) brief() *strings.Builder {
	b := &strings.Builder{}
	fmt.Fprintf(b, "passed %d, failed %d, skipped %d\n", len(s.Passed), len(s.Failed), len(s.Skipped))
	if len(s.Failed) > 0 {
		b.WriteString("\nFailed:\n")
		for _, name := range s.Failed {
			fmt.Fprintf(b, "- %s\n    %s\n", name, s.Failures[name])
		}
	}
	if len(s.Skipped) > 0 {
		b.WriteString("\nSkipped:\n")
		names := make([]string, 0, len(s.Skipped))
		for name := range s.Skipped {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			fmt.Fprintf(b, "- %s\n    %s\n", name, s.Skipped[name])
		}
	}
	return b
}
