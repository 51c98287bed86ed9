// Package nettest holds helpers for tests that attack the master's
// listeners (the API server and the MQTT broker).
package nettest

import (
	"errors"
	"net"
	"time"
)

// ClosedWithin reports whether the server closes conn before d passes,
// reading and discarding whatever it sends meanwhile.
func ClosedWithin(conn net.Conn, d time.Duration) bool {
	conn.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 512)
	for {
		_, err := conn.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}
