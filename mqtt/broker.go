package mqtt

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Broker is the master's embedded MQTT broker. Agents authenticate as
// "node:<name>" with the password issued at join; a node may publish only to
// its own report, online and reply topics and subscribe only to its own
// desired and cmd topics (plus the master epoch).
type Broker struct {
	Addr string
	TLS  *tls.Config
	Log  *slog.Logger
	// CheckPassword reports whether password is valid for node.
	CheckPassword func(node, password string) bool

	server *mochi.Server
	ln     *listeners.TCP
	once   sync.Once
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
	b.server = mochi.New(&mochi.Options{InlineClient: true, Logger: quiet})
	b.server.Options.Capabilities.MaximumClientWritesPending = 1024
	if err := b.server.AddHook(&aclHook{broker: b, log: log}, nil); err != nil {
		return err
	}
	b.ln = listeners.NewTCP(listeners.Config{ID: "edge", Address: b.Addr, TLSConfig: b.TLS})
	if err := b.server.AddListener(b.ln); err != nil {
		return fmt.Errorf("mqtt: listen on %s: %w", b.Addr, err)
	}
	return b.server.Serve()
}

// Address returns the address the broker listens on.
func (b *Broker) Address() string { return b.ln.Address() }

// Server returns the mochi server, for the master's inline client.
func (b *Broker) Server() *mochi.Server { return b.server }

// Close stops the broker; idempotent.
func (b *Broker) Close() error {
	var err error
	b.once.Do(func() {
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
	if !write && topic == topicEpoch {
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
}

func (h *aclHook) ID() string { return "edge-acl" }

func (h *aclHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mochi.OnConnectAuthenticate, mochi.OnACLCheck}, []byte{b})
}

func nodeOf(cl *mochi.Client) (string, bool) {
	return strings.CutPrefix(string(cl.Properties.Username), "node:")
}

func (h *aclHook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	node, ok := nodeOf(cl)
	switch {
	case !ok || node == "":
		h.log.Warn("mqtt: refused client without a node user name", "remote", cl.Net.Remote, "user", string(cl.Properties.Username))
		return false
	case h.broker.CheckPassword == nil || !h.broker.CheckPassword(node, string(pk.Connect.Password)):
		h.log.Warn("mqtt: refused node with a wrong password", "node", node, "remote", cl.Net.Remote)
		return false
	case subtle.ConstantTimeCompare([]byte(cl.ID), []byte(ClientID(node))) != 1:
		// Another id could inherit someone else's session and subscriptions.
		h.log.Warn("mqtt: refused node with a foreign client id", "node", node, "id", cl.ID)
		return false
	case pk.Connect.WillFlag && !Allowed(node, pk.Connect.WillTopic, true):
		// Wills are not ACL-checked when sent, so check them here.
		h.log.Warn("mqtt: refused node with a will on a foreign topic", "node", node, "topic", pk.Connect.WillTopic)
		return false
	}
	return true
}

func (h *aclHook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	node, _ := nodeOf(cl)
	if Allowed(node, topic, write) {
		return true
	}
	verb := "subscribe to"
	if write {
		verb = "publish on"
	}
	h.log.Warn("mqtt: denied "+verb+" a foreign topic", "node", node, "topic", topic)
	return false
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
