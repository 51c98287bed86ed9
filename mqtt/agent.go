package mqtt

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/internal/backoff"
)

// Agent is an agent's connection to the broker. Open never waits for the
// broker: an agent must start and run its pods with the master unreachable.
// It owns its reconnection (paho's own retries have no jitter, and a fleet
// back from a power cut must not knock on the broker in lockstep).
type Agent struct {
	URL      string
	Node     string
	Password string
	TLS      *tls.Config
	// KeepAlive bounds how long a silently lost node goes unnoticed (the
	// broker gives up after 1.5x). Default 3s.
	KeepAlive time.Duration
	Log       *slog.Logger

	// OnDesired receives each desired state; it must not block.
	OnDesired func(*core.DesiredState)
	// OnNetwork receives each cluster network state; it must not block.
	OnNetwork func(*core.NetworkState)
	// OnConnect is called after every (re)connection and whenever the master
	// asks for a fresh report; it must not block.
	OnConnect func()
	// OnConnectionLost is called when the connection drops.
	OnConnectionLost func(error)
	// Logs writes a container log to w until done or ctx ends.
	Logs func(ctx context.Context, req core.LogRequest, w func([]byte) error) error
	// Rejoin is called when the broker has refused the node's credentials
	// several times in a row (the master's data was reset or restored): it
	// joins again and returns the broker URL and password to use. Nil: keep
	// trying the old ones.
	Rejoin func(ctx context.Context) (url, password string, err error)

	mu       sync.Mutex // guards the fields below
	client   paho.Client
	url      string
	password string
	refusals int
	streams  map[string]*agentStream
	epoch    string
	closed   bool
	lost     chan struct{}
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

type agentStream struct {
	cancel context.CancelFunc
	pinged chan struct{}
}

// Open starts connecting in the background. Report and Events may be
// called before Open: they fail as not connected.
func (a *Agent) Open() error {
	if a.Log == nil {
		a.Log = slog.Default()
	}
	if a.KeepAlive == 0 {
		a.KeepAlive = 3 * time.Second
	}
	a.mu.Lock()
	a.streams = map[string]*agentStream{}
	a.url, a.password = a.URL, a.Password
	c, err := a.newClient(a.URL)
	if err == nil {
		a.client = c
	}
	a.mu.Unlock()
	if err != nil {
		return err
	}
	a.lost = make(chan struct{}, 1)
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.wg.Add(1)
	go a.loop()
	return nil
}

func (a *Agent) newClient(rawURL string) (paho.Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("mqtt url %q: want ssl://host:port or tcp://host:port", rawURL)
	}
	opts := paho.NewClientOptions().
		AddBroker(rawURL).
		SetClientID(ClientID(a.Node)).
		SetCredentialsProvider(func() (string, string) {
			a.mu.Lock()
			defer a.mu.Unlock()
			return "node:" + a.Node, a.password
		}).
		SetCleanSession(false). // the broker keeps QoS 1 messages while we are away
		SetKeepAlive(a.KeepAlive).
		SetPingTimeout(a.KeepAlive).
		SetConnectTimeout(5*time.Second).
		SetAutoReconnect(false). // see loop
		SetConnectRetry(false).
		SetOrderMatters(true).
		SetStore(&copyingStore{MemoryStore: paho.NewMemoryStore()}).
		SetWill(topicOnline(a.Node), Offline, 1, true).
		SetOnConnectHandler(a.onConnect).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			a.Log.Warn("lost connection to the broker; pods keep running", "err", err)
			if a.OnConnectionLost != nil {
				a.OnConnectionLost(err)
			}
			select {
			case a.lost <- struct{}{}:
			default:
			}
		})
	if a.TLS != nil {
		opts.SetTLSConfig(a.TLS)
	}
	return paho.NewClient(opts), nil
}

func (a *Agent) current() paho.Client {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.client
}

// Connected reports whether the connection to the broker is open: the
// agent's view of whether its master can be reached.
func (a *Agent) Connected() bool {
	c := a.current()
	return c != nil && c.IsConnectionOpen()
}

// loop connects, and connects again whenever the connection is lost, with
// capped, jittered backoff between attempts.
func (a *Agent) loop() {
	defer a.wg.Done()
	b := backoff.Backoff{Min: 500 * time.Millisecond, Max: 10 * time.Second}
	failures := 0
	for {
		t := a.current().Connect()
		select {
		case <-t.Done():
		case <-a.ctx.Done():
			return
		}
		if err := t.Error(); err != nil {
			failures++
			if failures == 1 || failures%30 == 0 {
				a.Log.Warn("cannot reach the broker; retrying", "url", a.URL, "err", err, "attempts", failures)
			}
			if a.refused(err) {
				a.rejoin()
			}
			if !b.Sleep(a.ctx) {
				return
			}
			continue
		}
		failures = 0
		b.Reset()
		select {
		case <-a.lost:
		case <-a.ctx.Done():
			return
		}
		if !b.Sleep(a.ctx) {
			return
		}
	}
}

// rejoin gets new credentials through Rejoin and uses them from the next
// attempt on.
func (a *Agent) rejoin() {
	a.Log.Warn("joining again: the master no longer accepts this node's credentials")
	u, pw, err := a.Rejoin(a.ctx)
	if err != nil {
		if a.ctx.Err() == nil {
			a.Log.Error("joining again failed; the node stays offline until it can", "err", core.ErrorMessage(err))
		}
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.password, a.refusals = pw, 0
	if u != a.url {
		c, err := a.newClient(u)
		if err != nil {
			a.Log.Error("the master handed out a bad broker URL", "url", u, "err", err)
			return
		}
		a.client, a.url = c, u
	}
}

// refused counts refusals of the node's credentials in a row and says
// whether it is time to join again.
func (a *Agent) refused(err error) bool {
	if !errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) && !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
		return false
	}
	a.mu.Lock()
	a.refusals++
	count := a.refusals
	a.mu.Unlock()
	a.Log.Warn("the broker refused this node's credentials", "refusals", count)
	return count >= 3 && a.Rejoin != nil
}

func (a *Agent) onConnect(c paho.Client) {
	a.mu.Lock()
	a.refusals = 0
	u := a.url
	a.mu.Unlock()
	a.Log.Info("connected to the broker", "url", u)
	subs := map[string]byte{topicDesired(a.Node): 1, topicCmd(a.Node): 1, topicEpoch: 1}
	if a.OnNetwork != nil {
		subs[topicNetwork] = 1
	}
	t := c.SubscribeMultiple(subs, a.onMessage)
	if t.WaitTimeout(10*time.Second) && t.Error() != nil {
		a.Log.Error("subscribe failed", "err", t.Error())
	}
	if a.OnConnect != nil {
		a.OnConnect()
	}
	c.Publish(topicOnline(a.Node), 1, true, Online)
}

func (a *Agent) onMessage(_ paho.Client, m paho.Message) {
	switch m.Topic() {
	case topicDesired(a.Node):
		ds, err := decodeDesired(a.Node, m.Payload())
		if err != nil {
			a.Log.Error("refused a desired state", "err", core.ErrorMessage(err))
			return
		}
		if a.OnDesired != nil {
			a.OnDesired(ds)
		}
	case topicNetwork:
		ns, err := decodeNetwork(m.Payload())
		if err != nil {
			a.Log.Error("refused a network state", "err", core.ErrorMessage(err))
			return
		}
		if a.OnNetwork != nil {
			a.OnNetwork(ns)
		}
	case topicEpoch:
		a.mu.Lock()
		changed := a.epoch != "" && a.epoch != string(m.Payload())
		a.epoch = string(m.Payload())
		a.mu.Unlock()
		if changed && a.OnConnect != nil {
			a.OnConnect() // the master restarted: report again
		}
	case topicCmd(a.Node):
		cmd, err := decodeCommand(m.Payload())
		if err != nil {
			a.Log.Warn("refused a command", "err", core.ErrorMessage(err))
			return
		}
		a.command(cmd.Type, cmd.ID, cmd.Logs)
	}
}

func (a *Agent) command(typ, id string, req core.LogRequest) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch typ {
	case "cancel":
		if s := a.streams[id]; s != nil {
			s.cancel()
		}
	case "ping":
		if s := a.streams[id]; s != nil {
			select {
			case s.pinged <- struct{}{}:
			default:
			}
		}
	case "logs":
		if a.streams[id] != nil || a.Logs == nil || a.closed || len(a.streams) >= maxLogStreams {
			return
		}
		ctx, cancel := context.WithCancel(a.ctx)
		s := &agentStream{cancel: cancel, pinged: make(chan struct{}, 1)}
		a.streams[id] = s
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.serveLogs(ctx, id, req, s)
		}()
	}
}

// maxLogStreams bounds the log requests a node serves at once.
const maxLogStreams = 16

func (a *Agent) serveLogs(ctx context.Context, id string, req core.LogRequest, s *agentStream) {
	defer func() {
		s.cancel()
		a.mu.Lock()
		delete(a.streams, id)
		a.mu.Unlock()
	}()
	if req.Follow {
		var pings sync.WaitGroup
		defer pings.Wait()
		defer s.cancel()
		pings.Add(1)
		go func() { // end a follow nobody reads any more
			defer pings.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-s.pinged:
				case <-time.After(3 * followPing):
					s.cancel()
					return
				}
			}
		}()
	}
	seq := 0
	send := func(c chunk) error {
		c.Seq = seq
		seq++
		b, _ := json.Marshal(c)
		t := a.current().Publish(topicReply(a.Node, id), 1, false, b)
		if !t.WaitTimeout(10 * time.Second) {
			return fmt.Errorf("publish timed out")
		}
		return t.Error()
	}
	err := a.Logs(ctx, req, func(p []byte) error {
		for len(p) > 0 {
			n := min(len(p), 32<<10)
			if err := send(chunk{Data: p[:n]}); err != nil {
				return err
			}
			p = p[n:]
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		send(chunk{Error: core.ErrorMessage(err), Code: core.ErrorCode(err), EOF: true})
		return
	}
	send(chunk{EOF: true})
}

// Report publishes a node report. While disconnected it returns an error;
// the agent reports again on reconnect, so nothing is lost.
func (a *Agent) Report(rep *core.NodeReport) error {
	c := a.current()
	if c == nil || !c.IsConnectionOpen() {
		return core.Errorf(core.EUNAVAILABLE, "not connected to the broker")
	}
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	t := c.Publish(topicReport(a.Node), 1, false, b)
	if !t.WaitTimeout(10 * time.Second) {
		return core.Errorf(core.EUNAVAILABLE, "report not acknowledged")
	}
	return t.Error()
}

// Events publishes events in one message and waits for the broker's ack.
func (a *Agent) Events(events []core.PodEvent) error {
	c := a.current()
	if c == nil || !c.IsConnectionOpen() {
		return core.Errorf(core.EUNAVAILABLE, "not connected to the broker")
	}
	b, err := json.Marshal(events)
	if err != nil {
		return err
	}
	t := c.Publish(topicEvents(a.Node), 1, false, b)
	if !t.WaitTimeout(10 * time.Second) {
		return core.Errorf(core.EUNAVAILABLE, "events not acknowledged")
	}
	return t.Error()
}

// Close says "offline" and disconnects: a stopped agent cannot keep its
// node Ready. Pods keep running; a quick restart stays within the master's
// node-lost grace period.
func (a *Agent) Close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	for _, s := range a.streams {
		s.cancel()
	}
	a.mu.Unlock()
	if a.cancel != nil {
		a.cancel()
		a.wg.Wait()
	}
	if c := a.current(); c != nil {
		if c.IsConnectionOpen() {
			c.Publish(topicOnline(a.Node), 1, true, Offline).WaitTimeout(time.Second)
		}
		c.Disconnect(250)
	}
}

// copyingStore is paho's memory store keeping its own copies of PUBLISH
// packets. On reconnect paho's resume sets the DUP flag on the packet it
// gets from the store, while the outgoing goroutine of the connection that
// just broke may still be writing (and so mutating) that same packet: a
// data race in paho v1.5.1. Copies in and out keep the store's packets
// away from every connection's goroutines.
type copyingStore struct {
	*paho.MemoryStore
}

func copyPacket(p packets.ControlPacket) packets.ControlPacket {
	if pub, ok := p.(*packets.PublishPacket); ok && pub != nil {
		cp := *pub
		return &cp
	}
	return p
}

func (s *copyingStore) Put(key string, p packets.ControlPacket) {
	s.MemoryStore.Put(key, copyPacket(p))
}

func (s *copyingStore) Get(key string) packets.ControlPacket {
	return copyPacket(s.MemoryStore.Get(key))
}
