package verify

import (
	"math"
	"sort"
)

// ksTolerance is the smallest KS statistic the full-jitter check fails on,
// however many samples there are: a client that records its measured sleep
// overshoots the drawn delay by timer resolution, and that must not read
// as synchronised retries. --no-jitter gives a KS of 1.
const ksTolerance = 0.05

// ksUniform returns the Kolmogorov-Smirnov statistic of the samples u (in
// [0, 1]) against Uniform(0, 1). It sorts u in place.
func ksUniform(u []float64) float64 {
	sort.Float64s(u)
	n := float64(len(u))
	d := 0.0
	for i, x := range u {
		lo := x - float64(i)/n
		hi := float64(i+1)/n - x
		d = math.Max(d, math.Max(lo, hi))
	}
	return d
}

// ksCritical is the critical value of the one-sample KS statistic for n
// samples at significance alpha, with Stephens' small-sample correction:
// c(alpha) / (sqrt(n) + 0.12 + 0.11/sqrt(n)), c(alpha) = sqrt(-ln(alpha/2)/2).
func ksCritical(n int, alpha float64) float64 {
	c := math.Sqrt(-math.Log(alpha/2) / 2)
	sn := math.Sqrt(float64(n))
	return c / (sn + 0.12 + 0.11/sn)
}

// maxSlotBounds returns, for n samples thrown uniformly into k slots, the
// typical largest slot count (the smallest m with k·P(X ≥ m) ≤ 1/2, X ~
// Binomial(n, 1/k)) and the count chance reaches with probability at most
// alpha (the smallest m with k·P(X ≥ m) ≤ alpha, a union bound).
func maxSlotBounds(n, k int, alpha float64) (expected, critical int) {
	if n <= 0 || k <= 0 {
		return 0, 0
	}
	p := 1 / float64(k)
	tail := binomialTail(n, p)
	expected, critical = n, n+1
	for m := len(tail) - 1; m >= 0; m-- {
		t := float64(k) * tail[m]
		if t <= 0.5 {
			expected = m
		}
		if t <= alpha {
			critical = m
		}
	}
	return expected, critical
}

// binomialTail returns t with t[m] = P(X ≥ m) for X ~ Binomial(n, p), for
// m from 0 up to where the tail vanishes (below 1e-300) or n+1.
func binomialTail(n int, p float64) []float64 {
	if p >= 1 {
		t := make([]float64, n+2)
		for m := 0; m <= n; m++ {
			t[m] = 1
		}
		return t
	}
	lp, lq := math.Log(p), math.Log1p(-p)
	lgN, _ := math.Lgamma(float64(n + 1))
	logPMF := func(j int) float64 {
		a, _ := math.Lgamma(float64(j + 1))
		b, _ := math.Lgamma(float64(n - j + 1))
		return lgN - a - b + float64(j)*lp + float64(n-j)*lq
	}
	// Walk up from the mean until the pmf is negligible.
	mean := float64(n) * p
	top := n
	for j := int(mean) + 1; j <= n; j++ {
		if logPMF(j) < -700 {
			top = j
			break
		}
	}
	t := make([]float64, top+2)
	acc := 0.0
	for j := top; j >= 0; j-- {
		acc += math.Exp(logPMF(j))
		t[j] = math.Min(1, acc)
	}
	return t
}
