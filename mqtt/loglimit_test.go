package mqtt

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// A refusal repeated a thousand times is logged four times.
func TestLogLimiter(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var l logLimiter
	for i := 0; i < 1000; i++ {
		l.warn(log, "n1", "refused")
	}
	l.warn(log, "n2", "refused")
	if n := strings.Count(buf.String(), "refused"); n != 5 {
		t.Fatalf("%d lines for 1000 refusals of n1 and one of n2, want 5:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "times=1000") {
		t.Fatalf("the count is not logged:\n%s", buf.String())
	}
}
