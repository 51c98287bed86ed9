package mqtt

import (
	"crypto/tls"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// conn is the master's way onto a broker: inline into the embedded one, or
// a paho client of an external one.
type conn interface {
	publish(topic string, payload []byte, retain bool) error
	subscribe(filter string, fn func(topic string, payload []byte)) error
	close()
	// stats returns bytes received and sent through the broker by clients.
	stats() (in, out int64)
}

type inlineConn struct {
	s      *mochi.Server
	nextID atomic.Int32
}

func (c *inlineConn) publish(topic string, payload []byte, retain bool) error {
	return c.s.Publish(topic, payload, retain, 1)
}

func (c *inlineConn) subscribe(filter string, fn func(string, []byte)) error {
	return c.s.Subscribe(filter, int(c.nextID.Add(1)), func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
		fn(pk.TopicName, pk.Payload)
	})
}

func (c *inlineConn) close() {}

func (c *inlineConn) stats() (int64, int64) {
	return atomic.LoadInt64(&c.s.Info.BytesReceived), atomic.LoadInt64(&c.s.Info.BytesSent)
}

type pahoConn struct {
	c    paho.Client
	mu   sync.Mutex
	subs map[string]func(string, []byte)
}

// dialExternal connects the master to an external broker at rawURL
// (tcp://, ssl://, mqtt://, mqtts://; user:password@ allowed). After every
// (re)connection it subscribes again and announces a new epoch: reports
// may have been lost while it was away.
func dialExternal(rawURL string, tlsConfig *tls.Config) (*pahoConn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("--mqtt-url %q: %w", rawURL, err)
	}
	switch u.Scheme {
	case "mqtt":
		u.Scheme = "tcp"
	case "mqtts":
		u.Scheme = "ssl"
	case "tcp", "ssl", "tls", "ws", "wss":
	default:
		return nil, fmt.Errorf("--mqtt-url %q: scheme must be tcp, ssl, mqtt or mqtts", rawURL)
	}
	pc := &pahoConn{subs: map[string]func(string, []byte){}}
	opts := paho.NewClientOptions().
		AddBroker(u.Scheme + "://" + u.Host).
		SetClientID("edgemaster").
		SetCleanSession(true).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(10 * time.Second).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetKeepAlive(15 * time.Second).
		SetOrderMatters(true)
	if tlsConfig != nil {
		opts.SetTLSConfig(tlsConfig)
	}
	if u.User != nil {
		opts.SetUsername(u.User.Username())
		if p, ok := u.User.Password(); ok {
			opts.SetPassword(p)
		}
	}
	opts.SetOnConnectHandler(func(c paho.Client) {
		pc.mu.Lock()
		defer pc.mu.Unlock()
		for f, fn := range pc.subs {
			c.Subscribe(f, 1, func(_ paho.Client, m paho.Message) { fn(m.Topic(), m.Payload()) })
		}
		c.Publish(topicEpoch, 1, true, []byte(randomID()))
	})
	pc.c = paho.NewClient(opts)
	t := pc.c.Connect()
	if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		pc.c.Disconnect(0)
		if t.Error() != nil {
			return nil, fmt.Errorf("connect to broker %s: %w", u.Host, t.Error())
		}
		return nil, fmt.Errorf("connect to broker %s: timed out", u.Host)
	}
	return pc, nil
}

func (c *pahoConn) publish(topic string, payload []byte, retain bool) error {
	t := c.c.Publish(topic, 1, retain, payload)
	if !t.WaitTimeout(10 * time.Second) {
		return fmt.Errorf("publish %s: timed out", topic)
	}
	return t.Error()
}

func (c *pahoConn) subscribe(filter string, fn func(string, []byte)) error {
	c.mu.Lock()
	c.subs[filter] = fn
	c.mu.Unlock()
	t := c.c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { fn(m.Topic(), m.Payload()) })
	if !t.WaitTimeout(10 * time.Second) {
		return fmt.Errorf("subscribe %s: timed out", filter)
	}
	return t.Error()
}

func (c *pahoConn) close() { c.c.Disconnect(250) }

// stats is not known for an external broker: it counts its own bytes.
func (c *pahoConn) stats() (int64, int64) { return -1, -1 }
