package mqtt

import (
	"log/slog"
	"sync"
)

// logLimiter logs a refusal the 1st, 10th, 100th, ... time it happens for
// one key (a node, an address), with the count: a peer that repeats what
// gets refused must not fill the master's disk with the same line.
type logLimiter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (l *logLimiter) warn(log *slog.Logger, key, msg string, args ...any) {
	l.mu.Lock()
	if l.counts == nil || len(l.counts) > 10000 {
		l.counts = map[string]int{} // bounded: forgetting only logs more
	}
	l.counts[key]++
	n := l.counts[key]
	l.mu.Unlock()
	for p := 1; p <= n; p *= 10 {
		if p == n {
			log.Warn(msg, append(args, "times", n)...)
			return
		}
	}
}
