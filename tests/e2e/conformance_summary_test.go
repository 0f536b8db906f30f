package e2e

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestConformanceSummary checks how the two passes' JUnit reports combine:
// a spec counts once, as what it did in the pass that ran it; skips carry
// skiff's reason or the suite's own; a failure outside the focus counts.
func TestConformanceSummary(t *testing.T) {
	dir := t.TempDir()
	write := func(name, cases string) {
		t.Helper()
		report := `<?xml version="1.0" encoding="UTF-8"?><testsuites><testsuite name="Kubernetes e2e suite">` + cases + `</testsuite></testsuites>`
		if err := os.WriteFile(filepath.Join(dir, name), []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("junit_parallel.xml", `
<testcase name="[SynchronizedBeforeSuite]" status="passed"></testcase>
<testcase name="[It] [sig-a] passes [Conformance]" status="passed"></testcase>
<testcase name="[It] [sig-a] serial [Serial] [Conformance]" status="skipped"><skipped message="skipped"></skipped></testcase>
<testcase name="[It] [sig-a] fails [Conformance]" status="failed"><failure message="boom&#xA;details" type="failed"></failure></testcase>
<testcase name="[It] [sig-a] should have at least two untainted nodes [Conformance]" status="skipped"><skipped message="skipped"></skipped></testcase>
<testcase name="[It] [sig-a] provider [Conformance]" status="skipped"><skipped message="skipped - Only supported for providers [gce]"></skipped></testcase>
<testcase name="[It] [sig-a] not conformance" status="skipped"><skipped message="skipped"></skipped></testcase>
<testcase name="[SynchronizedAfterSuite]" status="failed"><failure message="cleanup failed" type="failed"></failure></testcase>`)
	write("junit_serial.xml", `
<testcase name="[It] [sig-a] passes [Conformance]" status="skipped"><skipped message="skipped"></skipped></testcase>
<testcase name="[It] [sig-a] serial [Serial] [Conformance]" status="passed"></testcase>
<testcase name="[It] [sig-a] fails [Conformance]" status="skipped"><skipped message="skipped"></skipped></testcase>`)

	s, err := summarize(dir, `\[Conformance\]`)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"[sig-a] passes [Conformance]", "[sig-a] serial [Serial] [Conformance]"}; !reflect.DeepEqual(s.Passed, want) {
		t.Errorf("passed %q, want %q", s.Passed, want)
	}
	if want := []string{"[SynchronizedAfterSuite]", "[sig-a] fails [Conformance]"}; !reflect.DeepEqual(s.Failed, want) {
		t.Errorf("failed %q, want %q", s.Failed, want)
	}
	if got := s.Failures["[sig-a] fails [Conformance]"]; got != "boom" {
		t.Errorf("failure %q, want its first line", got)
	}
	wantSkipped := map[string]string{
		"[sig-a] should have at least two untainted nodes [Conformance]": conformanceSkips[0].reason,
		"[sig-a] provider [Conformance]":                                 "skipped - Only supported for providers [gce]",
	}
	if !reflect.DeepEqual(s.Skipped, wantSkipped) {
		t.Errorf("skipped %q, want %q", s.Skipped, wantSkipped)
	}
	if s.Ran() != 4 {
		t.Errorf("Ran() = %d, want 4", s.Ran())
	}
}
