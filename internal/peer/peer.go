// Package peer says what per-address limits count by.
package peer

import "net"

// Key is an IPv4 address, or an IPv6 address's /64: one host holds a whole
// /64, and counting its addresses apart would let it through any limit.
func Key(ip net.IP) string {
	if ip.To4() == nil && len(ip) == net.IPv6len {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}
