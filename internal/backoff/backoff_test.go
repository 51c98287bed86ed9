package backoff

import (
	"testing"
	"time"
)

func TestBackoffGrowsCapsAndJitters(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		w *= time.Millisecond
		d := b.Next()
		if d < w/2 || d > w {
			t.Fatalf("delay %d = %s, want within [%s, %s]", i, d, w/2, w)
		}
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Fatalf("after Reset the delay is %s, want at most 100ms", d)
	}
}

// Two nodes that fail at the same moment must not retry in lockstep.
func TestBackoffSpreadsAFleet(t *testing.T) {
	seen := map[time.Duration]bool{}
	for i := 0; i < 100; i++ {
		b := Backoff{Min: time.Second, Max: 30 * time.Second}
		for j := 0; j < 5; j++ {
			b.Next()
		}
		seen[b.Next().Truncate(100*time.Millisecond)] = true
	}
	if len(seen) < 20 {
		t.Fatalf("100 nodes' sixth retry fell into %d distinct 100ms slots; want them spread over 15s", len(seen))
	}
}
