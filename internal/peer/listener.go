package peer

import (
	"net"
	"sync"
)

// Listener closes a connection at once when its remote address (by Key)
// has Max open already, so that one host cannot hold every slot of a
// global limit (idle keep-alives, half-done handshakes) and lock everyone
// else out. Addresses Exempt says yes to are not counted.
type Listener struct {
	net.Listener
	Max    int
	Exempt func(net.IP) bool // nil: none

	mu   sync.Mutex
	open map[string]int
}

// Accept returns the next connection whose address is under its share.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		a, ok := c.RemoteAddr().(*net.TCPAddr)
		if !ok || (l.Exempt != nil && l.Exempt(a.IP)) {
			return c, nil
		}
		ip := Key(a.IP)
		l.mu.Lock()
		if l.open == nil {
			l.open = map[string]int{}
		}
		if l.open[ip] >= l.Max {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.open[ip]++
		l.mu.Unlock()
		return &conn{Conn: c, release: func() {
			l.mu.Lock()
			if l.open[ip]--; l.open[ip] <= 0 {
				delete(l.open, ip)
			}
			l.mu.Unlock()
		}}, nil
	}
}

type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *conn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
