package edgeagent

import "time"

// timerFunc starts a timer that fires once after d; stop releases it. The
// pod workers wait through Agent.timer, so that tests can pass a backoff or
// a grace period in microseconds with a fake clock instead of sleeping.
type timerFunc func(d time.Duration) (c <-chan time.Time, stop func() bool)

func realTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}
