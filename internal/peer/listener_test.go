package peer

import (
	"net"
	"testing"
)

// fakeListener hands out connections from the given remote addresses.
type fakeListener struct {
	net.Listener
	conns chan net.Conn
}

func (l *fakeListener) Accept() (net.Conn, error) { return <-l.conns, nil }

type fakeConn struct {
	net.Conn
	remote net.Addr
	closed *bool
}

func (c fakeConn) RemoteAddr() net.Addr { return c.remote }
func (c fakeConn) Close() error         { *c.closed = true; return nil }

// One remote address may hold at most Max connections; more are closed at
// once, and a closed one frees its slot. Loopback is exempt.
func TestListener(t *testing.T) {
	in := make(chan net.Conn, 16)
	l := &Listener{Listener: &fakeListener{conns: in}, Max: 2, Exempt: net.IP.IsLoopback}
	var closed [6]bool
	conn := func(i int, ip string) net.Conn {
		return fakeConn{remote: &net.TCPAddr{IP: net.ParseIP(ip), Port: 1000 + i}, closed: &closed[i]}
	}
	in <- conn(0, "192.0.2.1")
	in <- conn(1, "192.0.2.1")
	a, _ := l.Accept()
	l.Accept()
	in <- conn(2, "192.0.2.1") // over the share: closed, the next one is returned
	in <- conn(3, "192.0.2.2")
	if c, _ := l.Accept(); c.RemoteAddr().String() != "192.0.2.2:1003" || !closed[2] {
		t.Fatalf("got %s; the third connection of 192.0.2.1 closed: %v", c.RemoteAddr(), closed[2])
	}
	a.Close()
	in <- conn(4, "192.0.2.1")
	if c, _ := l.Accept(); c.RemoteAddr().String() != "192.0.2.1:1004" {
		t.Fatalf("after a close the peer got no slot back: %s", c.RemoteAddr())
	}
	for i := 0; i < 5; i++ {
		in <- conn(5, "127.0.0.1")
		if c, _ := l.Accept(); c.RemoteAddr().String() != "127.0.0.1:1005" {
			t.Fatal("loopback was limited")
		}
	}
}
