//go:build !linux

package clusterdns

import (
	"errors"
	"syscall"
)

// freebindControl: IP_FREEBIND is Linux only; elsewhere FreeBind fails
// Start rather than silently binding nothing.
func freebindControl(on bool) func(network, address string, c syscall.RawConn) error {
	if !on {
		return nil
	}
	return func(string, string, syscall.RawConn) error {
		return errors.New("FreeBind needs Linux (IP_FREEBIND)")
	}
}
