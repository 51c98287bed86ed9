package clusterdns

import (
	"fmt"
	"syscall"
)

// freebindControl sets IP_FREEBIND on the listening sockets when asked,
// so they bind an address that is not (yet) on any interface and receive
// once it appears. It needs no privilege.
func freebindControl(on bool) func(network, address string, c syscall.RawConn) error {
	if !on {
		return nil
	}
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_FREEBIND, 1)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("IP_FREEBIND on %s %s: %w", network, address, serr)
		}
		return nil
	}
}
