package main

import (
	"testing"
	"time"
)

// TestHistogramQuantiles checks the reported percentiles against exact ones.
func TestHistogramQuantiles(t *testing.T) {
	h := new(histogram)
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, time.Second}} {
		got := h.quantile(tt.q)
		if d := got - tt.want; d > tt.want/50 || d < -tt.want/50 {
			t.Errorf("quantile(%v) = %v, want %v within 2%%", tt.q, got, tt.want)
		}
	}
}

// TestHistogramSummary checks that each key of the summary gets its own figure
// (bucket middles, so p50 and p99 are a little above the exact 50 and 99).
func TestHistogramSummary(t *testing.T) {
	h := new(histogram)
	for i := 1; i <= 100; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	if got, want := h.summary("x_"), "x_p50=50.07ms x_p99=99.09ms x_max=100.00ms"; got != want {
		t.Errorf("summary = %q, want %q", got, want)
	}
}
