package mqtt

import (
	"net"
	"testing"
)

type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

// One remote address gets at most maxPendingPerIP handshakes at a time;
// others still get in, and so does the master's own host.
func TestGuardedListener_PerIPShare(t *testing.T) {
	l := &guardedListener{maxPendingPerIP: 2, byIP: map[string]int{}}
	peer := func(ip string) net.Conn { return addrConn{remote: &net.TCPAddr{IP: net.ParseIP(ip), Port: 1}} }
	a1, a2, a3 := peer("192.0.2.1"), peer("192.0.2.1"), peer("192.0.2.1")
	if !l.admit(a1) || !l.admit(a2) {
		t.Fatal("the first two handshakes of a peer were refused")
	}
	if l.admit(a3) {
		t.Fatal("a third handshake of the same peer was admitted")
	}
	if !l.admit(peer("192.0.2.2")) {
		t.Fatal("another peer was refused")
	}
	for i := 0; i < 10; i++ {
		if !l.admit(peer("127.0.0.1")) {
			t.Fatal("loopback was refused")
		}
	}
	l.release(a1)
	if !l.admit(a3) {
		t.Fatal("a peer below its share again was refused")
	}
	// One IPv6 host holds a /64: its addresses share one share.
	if !l.admit(peer("2001:db8::1")) || !l.admit(peer("2001:db8::2")) {
		t.Fatal("an IPv6 host's first two handshakes were refused")
	}
	if l.admit(peer("2001:db8::ffff")) {
		t.Fatal("a third address of the same /64 was admitted")
	}
}
