package promtext

import (
	"testing"
)

const page = `# TYPE c counter
c{a="1"} 2
c{a="2"} 3
# TYPE g gauge
g 1.5
# TYPE u untyped
u{x="y"} 4
u{x="z"} -1
# TYPE h histogram
h_bucket{le="+Inf"} 7
h_sum 9
h_count 7
`

func TestSum(t *testing.T) {
	tests := []struct {
		metric string
		want   float64
		found  bool
	}{
		{"c", 5, true},
		{"g", 1.5, true},
		{"u", 3, true},
		{"h", 0, true},
		{"absent", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.metric, func(t *testing.T) {
			v, found, err := Sum([]byte(page), tc.metric)
			if err != nil || v != tc.want || found != tc.found {
				t.Fatalf("Sum(%q) = %v, %v, %v; want %v, %v, nil", tc.metric, v, found, err, tc.want, tc.found)
			}
		})
	}
}

func TestSums(t *testing.T) {
	got, err := Sums([]byte(page))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"c": 5, "g": 1.5, "u": 3, "h": 0}
	if len(got) != len(want) {
		t.Fatalf("Sums = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("Sums[%q] = %v, want %v", k, got[k], v)
		}
	}
}

func TestNotAPage(t *testing.T) {
	for _, bad := range []string{"<html>oops</html>", "c{a=\"1\" 2\n", "# TYPE c counter\nc nope\n"} {
		if _, _, err := Sum([]byte(bad), "c"); err == nil {
			t.Errorf("Sum(%q): no error", bad)
		}
		if _, err := Sums([]byte(bad)); err == nil {
			t.Errorf("Sums(%q): no error", bad)
		}
	}
}
