package mqtt

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Broker is the master's embedded MQTT broker. Agents authenticate as
// "node:<name>" with the password issued at join; a node may publish only to
// its own report, online and reply topics and subscribe only to its own
// desired and cmd topics (plus the master epoch). Only the liveness topic
// may carry a node's retained messages.
//
// Nothing a client sends before it has authenticated costs the broker more
// than MaxConnectSize bytes or ConnectTimeout of a goroutine, and no more
// than MaxPending clients may be at that stage at once.
type Broker struct {
	Addr string
	TLS  *tls.Config
	Log  *slog.Logger
	// CheckPassword reports whether password is valid for node.
	CheckPassword func(node, password string) bool
	// Known reports whether node still has a credential; every publish and
	// subscribe checks it, so a node revoked while it (re)connected is
	// stopped at its next packet. Nil: every authenticated node is.
	Known func(node string) bool

	// Limits; zero takes the default in brackets.
	MaxPacketSize   uint32        // any packet after CONNECT [4 MiB]
	MaxConnectSize  int           // the CONNECT packet [64 KiB]
	MaxClients      int           // open connections [4096]
	MaxPending      int           // connections before their CONNECT is read [256]
	MaxPendingPerIP int           // of those, from one remote address, loopback exempt [16]
	ConnectTimeout  time.Duration // TLS handshake and CONNECT [10s]
	// InflightTTL is how long QoS 1 messages wait for a disconnected agent
	// [1h]. Its desired state is retained and does not expire: an agent that
	// comes back gets it when it subscribes, queued copies add nothing.
	InflightTTL time.Duration

	server *mochi.Server
	ln     *guardedListener
	once   sync.Once
	stop   chan struct{}
	wg     sync.WaitGroup
}

// Open starts the broker.
func (b *Broker) Open() error {
	log := b.Log
	if log == nil {
		log = slog.Default()
	}
	// mochi logs every connection at info and dumps refused packets at warn;
	// our ACL hook says what matters, so keep only mochi's errors.
	quiet := slog.New(levelFilter{h: log.Handler(), min: slog.LevelError})
	b.setDefaults()
	b.server = mochi.New(&mochi.Options{InlineClient: true, Logger: quiet})
	caps := b.server.Options.Capabilities
	// Messages queued for one client: its desired state is retained (only
	// the latest matters), the rest are small commands.
	caps.MaximumClientWritesPending = 128
	caps.MaximumPacketSize = b.MaxPacketSize
	caps.MaximumClients = int64(b.MaxClients)
	// mochi drops retained messages older than this (24 h by default): an
	// agent that lost its local state on a cluster unchanged for a day
	// would get no desired state at all. 0 keeps them.
	caps.MaximumMessageExpiryInterval = 0
	if err := b.server.AddHook(&aclHook{broker: b, log: log}, nil); err != nil {
		return err
	}
	b.ln = &guardedListener{id: "edge", addr: b.Addr, tls: b.TLS, timeout: b.ConnectTimeout, maxConnect: b.MaxConnectSize,
		maxConns: int64(b.MaxClients), maxPending: int64(b.MaxPending), maxPendingPerIP: b.MaxPendingPerIP, log: log}
	if err := b.server.AddListener(b.ln); err != nil {
		return fmt.Errorf("mqtt: listen on %s: %w", b.Addr, err)
	}
	if err := b.server.Serve(); err != nil {
		return err
	}
	b.stop = make(chan struct{})
	b.wg.Add(1)
	go b.janitor()
	return nil
}

func (b *Broker) setDefaults() {
	if b.MaxPacketSize == 0 {
		b.MaxPacketSize = 1536 << 10
	}
	if b.MaxConnectSize == 0 {
		b.MaxConnectSize = 64 << 10
	}
	if b.MaxClients == 0 {
		b.MaxClients = 4096
	}
	if b.MaxPending == 0 {
		b.MaxPending = 256
	}
	if b.MaxPendingPerIP == 0 {
		b.MaxPendingPerIP = 16
	}
	if b.ConnectTimeout == 0 {
		b.ConnectTimeout = 10 * time.Second
	}
	if b.InflightTTL == 0 {
		b.InflightTTL = time.Hour
	}
}

// janitor drops QoS 1 messages queued for agents that stay away longer
// than InflightTTL, so a node offline for a month costs no memory.
func (b *Broker) janitor() {
	defer b.wg.Done()
	t := time.NewTicker(min(b.InflightTTL/4, time.Minute))
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case now := <-t.C:
			for _, cl := range b.server.Clients.GetAll() {
				if cl.Closed() && !cl.Net.Inline {
					cl.ClearExpiredInflights(now.Unix(), int64(b.InflightTTL/time.Second))
				}
			}
		}
	}
}

// Refused returns how many connections the pre-authentication guards
// dropped (over a limit, too slow, or not starting with a small CONNECT).
func (b *Broker) Refused() int64 { return b.ln.refused.Load() }

// Disconnect ends node's session, if any, and forgets its subscriptions
// and queued messages: its credential was revoked.
func (b *Broker) Disconnect(node string) {
	cl, ok := b.server.Clients.Get(ClientID(node))
	if !ok {
		return
	}
	b.server.DisconnectClient(cl, packets.ErrNotAuthorized)
	b.server.UnsubscribeClient(cl)
	cl.ClearInflights()
	b.server.Clients.Delete(cl.ID)
}

// Address returns the address the broker listens on.
func (b *Broker) Address() string { return b.ln.Address() }

// Server returns the mochi server, for the master's inline client.
func (b *Broker) Server() *mochi.Server { return b.server }

// Close stops the broker; idempotent.
func (b *Broker) Close() error {
	var err error
	b.once.Do(func() {
		if b.stop != nil {
			close(b.stop)
			b.wg.Wait()
		}
		if b.server != nil {
			err = b.server.Close()
		}
	})
	return err
}

// Allowed reports whether node may publish (write) or subscribe to topic.
func Allowed(node, topic string, write bool) bool {
	if strings.ContainsAny(topic, "+#") && write {
		return false
	}
	if !write && (topic == topicEpoch || topic == topicNetwork) {
		return true
	}
	n, rest, ok := parseNodeTopic(topic)
	if !ok || n != node {
		return false
	}
	if write {
		return rest == "report" || rest == "online" || rest == "events" ||
			(strings.HasPrefix(rest, "reply/") && len(rest) > len("reply/") && !strings.Contains(rest[len("reply/"):], "/"))
	}
	return rest == "desired" || rest == "cmd"
}

type aclHook struct {
	mochi.HookBase
	broker *Broker
	log    *slog.Logger
	limit  logLimiter
}

func (h *aclHook) ID() string { return "edge-acl" }

func (h *aclHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mochi.OnConnectAuthenticate, mochi.OnACLCheck, mochi.OnPublish, mochi.OnDisconnect}, []byte{b})
}

func nodeOf(cl *mochi.Client) (string, bool) {
	return strings.CutPrefix(string(cl.Properties.Username), "node:")
}

func (h *aclHook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	node, ok := nodeOf(cl)
	switch {
	case !ok || node == "":
		h.limit.warn(h.log, hostOf(cl.Net.Remote), "mqtt: refused client without a node user name", "remote", cl.Net.Remote, "user", string(cl.Properties.Username))
		return false
	case h.broker.CheckPassword == nil || !h.broker.CheckPassword(node, string(pk.Connect.Password)):
		h.limit.warn(h.log, hostOf(cl.Net.Remote), "mqtt: refused node with a wrong password", "node", node, "remote", cl.Net.Remote)
		return false
	case subtle.ConstantTimeCompare([]byte(cl.ID), []byte(ClientID(node))) != 1:
		// Another id could inherit someone else's session and subscriptions.
		h.limit.warn(h.log, "node:"+node, "mqtt: refused node with a foreign client id", "node", node, "id", cl.ID)
		return false
	case pk.Connect.WillFlag && pk.Connect.WillTopic != topicOnline(node):
		// Wills are neither ACL-checked nor seen by OnPublish when mochi
		// sends (and retains) them: the only will a node has is "offline" on
		// its own liveness topic, or it could leave any number of retained
		// messages behind for good.
		h.limit.warn(h.log, "node:"+node, "mqtt: refused node with a will off its liveness topic", "node", node, "topic", pk.Connect.WillTopic)
		return false
	}
	return true
}

func (h *aclHook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	node, _ := nodeOf(cl)
	if h.broker.Known != nil && !h.broker.Known(node) {
		h.limit.warn(h.log, "node:"+node, "mqtt: refused a revoked node; disconnecting it", "node", node)
		h.broker.server.DisconnectClient(cl, packets.ErrNotAuthorized)
		return false
	}
	if Allowed(node, topic, write) {
		return true
	}
	verb := "subscribe to"
	if write {
		verb = "publish on"
	}
	h.limit.warn(h.log, "node:"+node, "mqtt: denied "+verb+" a foreign topic", "node", node, "topic", topic)
	if write {
		// mochi drops a refused QoS 0 publish without a word: a node that
		// tries one is disconnected, as for QoS 1.
		h.broker.server.DisconnectClient(cl, packets.ErrNotAuthorized)
	}
	return false
}

// OnPublish refuses retained messages from nodes except on their liveness
// topic: anything else retained would stay in the broker's memory for good.
// mochi would still retain a v3 message whatever error a hook returns, so
// the packet is rejected and the client disconnected.
func (h *aclHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || !pk.FixedHeader.Retain {
		return pk, nil
	}
	node, _ := nodeOf(cl)
	if n, rest, ok := parseNodeTopic(pk.TopicName); ok && n == node && rest == "online" {
		return pk, nil
	}
	h.limit.warn(h.log, "node:"+node, "mqtt: refused a retained publish from a node; disconnecting it", "node", node, "topic", pk.TopicName)
	h.broker.server.DisconnectClient(cl, packets.ErrNotAuthorized)
	return pk, packets.ErrRejectPacket
}

// hostOf returns the host part of a remote address.
func hostOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// OnDisconnect says "offline" for a node whose connection ended: a node
// that disconnects cleanly without saying so itself (MQTT then drops its
// will) would otherwise stay Ready with nobody running its pods. Not when
// its session was taken over by a new connection of the same node.
func (h *aclHook) OnDisconnect(cl *mochi.Client, err error, expire bool) {
	node, ok := nodeOf(cl)
	if !ok || node == "" || cl.Net.Inline || cl.IsTakenOver() {
		return
	}
	if cur, ok := h.broker.server.Clients.Get(cl.ID); ok && cur != cl && !cur.Closed() {
		return // already back
	}
	h.broker.server.Publish(topicOnline(node), []byte(Offline), true, 1)
}

// levelFilter drops records below min.
type levelFilter struct {
	h   slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(_ context.Context, l slog.Level) bool { return l >= f.min }
func (f levelFilter) Handle(ctx context.Context, r slog.Record) error {
	return f.h.Handle(ctx, r)
}
func (f levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{f.h.WithAttrs(a), f.min}
}
func (f levelFilter) WithGroup(n string) slog.Handler { return levelFilter{f.h.WithGroup(n), f.min} }
