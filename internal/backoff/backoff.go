// Package backoff is the one retry policy of the project: capped
// exponential delays with jitter. After a power cut a whole fleet comes
// back at the same moment; without jitter its retries would stay in
// lockstep and hit the master (or a Pi's containerd) all at once, forever.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff hands out retry delays. The zero value starts at 1s and caps at
// 30s. It is not safe for concurrent use: each retry loop owns one.
type Backoff struct {
	Min, Max time.Duration
	n        int
}

// Next returns the delay before the next attempt: Min·2^n capped at Max,
// then spread uniformly over [d/2, d] ("equal jitter"), so delays grow
// but two nodes that failed together drift apart.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = time.Second
	}
	if hi <= 0 {
		hi = 30 * time.Second
	}
	d := lo
	for i := 0; i < b.n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	if d < hi {
		b.n++
	}
	return Jitter(d)
}

// Jitter spreads d uniformly over [d/2, d].
func Jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// Reset starts again from Min, after a success.
func (b *Backoff) Reset() { b.n = 0 }

// Sleep waits for the next delay; false if ctx ended first.
func (b *Backoff) Sleep(ctx context.Context) bool {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
