package verify

import (
	"bytes"
	"encoding/xml"
	"os"
	"path/filepath"
	"testing"
)

func TestJUnitGolden(t *testing.T) {
	th, err := ParseThreshold("op_p99 < 800ms")
	if err != nil {
		t.Fatal(err)
	}
	r := &Report{Verdict: VerdictViolated, Seed: 7, Profile: "default", DurationSeconds: 12.5,
		Latency: &Latency{Ops: LatencyStats{Count: 3, P99MS: 950}}}
	r.Checks = []Check{
		held(CheckEffectsEqualOps, "300 of 300", ""),
		failed(CheckExactlyOncePerOp, "1 of 300 ops wrong", "applied twice", cxList{max: 5}),
		inconclusive(CheckOutboxDrained, "? pending", "no outbox metrics"),
		nothing(CheckDLQExact, "no DLQ", "no poison injected"),
		checkThreshold(th, r),
	}
	r.Checks[1].Counterexamples = []Counterexample{{Op: 17, Key: "k-17", Why: "applied 2 times (ledger)"}}
	r.Checks[1].CounterexamplesTotal = 1
	var b bytes.Buffer
	if err := WriteJUnit(&b, r); err != nil {
		t.Fatal(err)
	}
	// Well-formed, and the counts a CI system shows.
	var got junitSuites
	if err := xml.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("not XML: %v\n%s", err, b.String())
	}
	s := got.Suites[0]
	if s.Tests != 5 || s.Failures != 2 || s.Errors != 1 || s.Skipped != 1 || s.Cases[4].Failure == nil || s.Cases[4].Name != "threshold: op_p99 < 800ms" {
		t.Fatalf("suite %+v", s)
	}
	golden := filepath.Join("testdata", "junit.xml")
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Fatalf("junit.xml differs from %s (go test -run TestJUnitGolden -update):\n%s", golden, b.String())
	}
}
