package edgeagent

import (
	"math/rand/v2"
	"time"
)

// timerFunc starts a timer that fires once after d; stop releases it. The
// pod workers wait through Agent.timer, so that tests can pass a backoff or
// a grace period in microseconds with a fake clock instead of sleeping.
type timerFunc func(d time.Duration) (c <-chan time.Time, stop func() bool)

func realTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// retryBackoff is a capped exponential delay with jitter, for retries that
// reach beyond the agent (containerd, a registry): a fleet that comes back
// after a power cut must not retry in lockstep. There is no shared helper
// for this yet; it is small enough to move to internal/ when one comes.
type retryBackoff struct {
	min, max time.Duration
	cur      time.Duration
}

// next returns the delay before the next attempt: the current step, doubled
// each time up to max, less a random part of up to half of it.
func (b *retryBackoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return jitter(b.cur)
}

// reset starts again from min after a success.
func (b *retryBackoff) reset() { b.cur = 0 }

// jitter returns d less a random part of up to half of it.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d - rand.N(d/2)
}
