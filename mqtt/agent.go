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
)

// Agent is an agent's connection to the broker. Open never waits for the
// broker: an agent must start and run its pods with the master unreachable.
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
	// OnConnect is called after every (re)connection and whenever the master
	// asks for a fresh report; it must not block.
	OnConnect func()
	// OnConnectionLost is called when the connection drops.
	OnConnectionLost func(error)
	// Logs writes a container log to w until done or ctx ends.
	Logs func(ctx context.Context, req core.LogRequest, w func([]byte) error) error
	// OnRefused is called when the broker refuses the node's credentials
	// (count: refusals in a row), e.g. after the master's data was reset.
	OnRefused func(count int)

	client   paho.Client
	refusals int
	mu       sync.Mutex
	streams  map[string]*agentStream
	epoch    string
	closed   bool
}

type agentStream struct {
	cancel context.CancelFunc
	pinged chan struct{}
}

// Open starts connecting in the background.
func (a *Agent) Open() error {
	if a.Log == nil {
		a.Log = slog.Default()
	}
	if a.KeepAlive == 0 {
		a.KeepAlive = 3 * time.Second
	}
	a.streams = map[string]*agentStream{}
	u, err := url.Parse(a.URL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("mqtt url %q: want ssl://host:port or tcp://host:port", a.URL)
	}
	opts := paho.NewClientOptions().
		AddBroker(a.URL).
		SetClientID(ClientID(a.Node)).
		SetUsername("node:"+a.Node).
		SetPassword(a.Password).
		SetCleanSession(false). // the broker keeps QoS 1 messages while we are away
		SetKeepAlive(a.KeepAlive).
		SetPingTimeout(a.KeepAlive).
		SetConnectTimeout(5*time.Second).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10*time.Second). // capped exponential backoff
		SetOrderMatters(true).
		SetWill(topicOnline(a.Node), Offline, 1, true).
		SetOnConnectHandler(a.onConnect).
		SetConnectionNotificationHandler(a.onNotification).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			a.Log.Warn("lost connection to the broker; pods keep running", "err", err)
			if a.OnConnectionLost != nil {
				a.OnConnectionLost(err)
			}
		})
	if a.TLS != nil {
		opts.SetTLSConfig(a.TLS)
	}
	a.client = paho.NewClient(opts)
	a.client.Connect() // retries in the background
	return nil
}

func (a *Agent) onNotification(_ paho.Client, n paho.ConnectionNotification) {
	f, ok := n.(paho.ConnectionNotificationFailed)
	if !ok {
		return
	}
	if !errors.Is(f.Reason, packets.ErrorRefusedBadUsernameOrPassword) && !errors.Is(f.Reason, packets.ErrorRefusedNotAuthorised) {
		return
	}
	a.mu.Lock()
	a.refusals++
	count := a.refusals
	a.mu.Unlock()
	a.Log.Warn("the broker refused this node's credentials", "refusals", count)
	if a.OnRefused != nil {
		a.OnRefused(count)
	}
}

func (a *Agent) onConnect(c paho.Client) {
	a.mu.Lock()
	a.refusals = 0
	a.mu.Unlock()
	a.Log.Info("connected to the broker", "url", a.URL)
	subs := map[string]byte{topicDesired(a.Node): 1, topicCmd(a.Node): 1, topicEpoch: 1}
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
		var ds core.DesiredState
		if err := json.Unmarshal(m.Payload(), &ds); err != nil {
			a.Log.Error("undecodable desired state", "err", err)
			return
		}
		if a.OnDesired != nil {
			a.OnDesired(&ds)
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
		var cmd struct {
			Type string          `json:"type"`
			ID   string          `json:"id"`
			Logs core.LogRequest `json:"logs"`
		}
		if json.Unmarshal(m.Payload(), &cmd) != nil {
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
		if a.streams[id] != nil || a.Logs == nil {
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		s := &agentStream{cancel: cancel, pinged: make(chan struct{}, 1)}
		a.streams[id] = s
		go a.serveLogs(ctx, id, req, s)
	}
}

func (a *Agent) serveLogs(ctx context.Context, id string, req core.LogRequest, s *agentStream) {
	defer func() {
		s.cancel()
		a.mu.Lock()
		delete(a.streams, id)
		a.mu.Unlock()
	}()
	if req.Follow {
		go func() { // end a follow nobody reads any more
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
		t := a.client.Publish(topicReply(a.Node, id), 1, false, b)
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
	if !a.client.IsConnectionOpen() {
		return core.Errorf(core.EUNAVAILABLE, "not connected to the broker")
	}
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	t := a.client.Publish(topicReport(a.Node), 1, false, b)
	if !t.WaitTimeout(10 * time.Second) {
		return core.Errorf(core.EUNAVAILABLE, "report not acknowledged")
	}
	return t.Error()
}

// Events publishes events in one message and waits for the broker's ack.
func (a *Agent) Events(events []core.PodEvent) error {
	if !a.client.IsConnectionOpen() {
		return core.Errorf(core.EUNAVAILABLE, "not connected to the broker")
	}
	b, err := json.Marshal(events)
	if err != nil {
		return err
	}
	t := a.client.Publish(topicEvents(a.Node), 1, false, b)
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
	if a.client != nil {
		if a.client.IsConnectionOpen() {
			a.client.Publish(topicOnline(a.Node), 1, true, Offline).WaitTimeout(time.Second)
		}
		a.client.Disconnect(250)
	}
}
