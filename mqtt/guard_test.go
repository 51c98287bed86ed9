package mqtt_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/internal/nettest"
	"github.com/edgeorch/edge/mqtt"
)

func dialTLS(t *testing.T, addr string) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// Before authentication a client may cost the broker neither memory it
// claims nor a goroutine held forever.
func TestBroker_PreAuthLimits(t *testing.T) {
	e := startEmbeddedWith(t, func(b *mqtt.Broker) {
		b.ConnectTimeout = 300 * time.Millisecond
		b.MaxPending = 20
	})
	addr := e.broker.Address()

	t.Run("HugeConnectHeader", func(t *testing.T) {
		before := heapInUse()
		var conns []*tls.Conn
		for i := 0; i < 15; i++ {
			c := dialTLS(t, addr)
			// CONNECT, remaining length 268435455 (the 4-byte maximum, 256 MiB).
			if _, err := c.Write([]byte{0x10, 0xff, 0xff, 0xff, 0x7f}); err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		for i, c := range conns {
			if !nettest.ClosedWithin(c, 5*time.Second) {
				t.Fatalf("connection %d claiming a 256 MiB CONNECT is still open", i)
			}
		}
		if grew := int64(heapInUse()) - int64(before); grew > 64<<20 {
			t.Fatalf("the broker's heap grew by %d MiB for 15 oversized CONNECT headers", grew>>20)
		}
	})
	t.Run("SilentTCP", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if !nettest.ClosedWithin(c, 5*time.Second) {
			t.Fatal("a connection that never starts TLS is held open")
		}
	})
	t.Run("TLSButNoConnect", func(t *testing.T) {
		c := dialTLS(t, addr)
		if err := c.Handshake(); err != nil {
			t.Fatal(err)
		}
		if !nettest.ClosedWithin(c, 5*time.Second) {
			t.Fatal("a TLS connection that never sends CONNECT is held open")
		}
	})
	t.Run("NotConnectFirst", func(t *testing.T) {
		c := dialTLS(t, addr)
		c.Write([]byte{0x30, 0x02, 0x00, 0x00}) // PUBLISH before CONNECT
		if !nettest.ClosedWithin(c, 5*time.Second) {
			t.Fatal("a PUBLISH before CONNECT is accepted")
		}
	})
	// A real agent still gets in.
	desired := make(chan *core.DesiredState, 1)
	startAgent(t, e.url, "n1", "pw1", e.agentTLS(t), desired)
	waitFor(t, "the agent online", func() bool { _, on, _ := e.sink.get("n1"); return on })
	if e.broker.Refused() < 18 {
		t.Fatalf("Refused() = %d, want the dropped connections counted", e.broker.Refused())
	}
}

// Only MaxPending connections may wait in their handshake; more are
// dropped at once rather than queued behind them.
func TestBroker_PendingCap(t *testing.T) {
	e := startEmbeddedWith(t, func(b *mqtt.Broker) {
		b.ConnectTimeout = time.Minute
		b.MaxPending = 5
	})
	addr := e.broker.Address()
	for i := 0; i < 5; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	waitFor(t, "a connection over the cap to be dropped", func() bool {
		extra, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer extra.Close()
		return nettest.ClosedWithin(extra, 200*time.Millisecond)
	})
	if e.broker.Refused() == 0 {
		t.Fatal("Refused() = 0 after dropping a connection")
	}
}

// A node may retain messages only on its liveness topic.
func TestBroker_RetainedOnlyOnLiveness(t *testing.T) {
	e := startEmbedded(t)
	c, err := rawClient(t, e.url, "node:n1", "pw1", mqtt.ClientID("n1"), e.agentTLS(t))
	if err != nil {
		t.Fatal(err)
	}
	c.Publish("edge/node/n1/online", 1, true, "online").WaitTimeout(5 * time.Second)
	waitFor(t, "n1 online", func() bool { _, on, _ := e.sink.get("n1"); return on })
	c.Publish("edge/node/n1/report", 1, true, `{"labels":{"a":"b"}}`).WaitTimeout(time.Second)
	waitFor(t, "the retaining client to be disconnected", func() bool { return !c.IsConnectionOpen() })
	for _, topic := range []string{"edge/node/n1/report"} {
		if msgs := e.broker.Server().Topics.Messages(topic); len(msgs) != 0 {
			t.Fatalf("the broker retained %d messages on %s", len(msgs), topic)
		}
	}
	if msgs := e.broker.Server().Topics.Messages("edge/node/n1/online"); len(msgs) != 1 {
		t.Fatalf("the liveness topic holds %d retained messages, want 1", len(msgs))
	}
}

// Desired state is retained for good: an agent that lost its local state on
// a cluster unchanged for more than a day must still get it.
func TestBroker_DesiredStateDoesNotExpire(t *testing.T) {
	e := startEmbedded(t)
	if err := e.master.PublishDesired(context.Background(), &core.DesiredState{Node: "n1", Hash: "old"}); err != nil {
		t.Fatal(err)
	}
	srv := e.broker.Server()
	topic := "edge/node/n1/desired"
	msgs := srv.Topics.Messages(topic)
	if len(msgs) != 1 {
		t.Fatalf("%d retained messages on %s", len(msgs), topic)
	}
	// Age it by 25 hours, then let mochi's once-a-second expiry sweep run.
	pk := msgs[0]
	pk.Created = time.Now().Add(-25 * time.Hour).Unix()
	srv.Topics.RetainMessage(pk)
	time.Sleep(2500 * time.Millisecond) // two sweeps: waiting for something not to happen
	desired := make(chan *core.DesiredState, 1)
	startAgent(t, e.url, "n1", "pw1", e.agentTLS(t), desired)
	select {
	case ds := <-desired:
		if ds.Hash != "old" {
			t.Fatalf("got desired state %q", ds.Hash)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("a day-old retained desired state was not delivered")
	}
}

// A log reader that stops reading must not stall the agent's connection:
// the broker delivers everything a node sends on that node's goroutine.
func TestMaster_SlowLogReaderDoesNotStallTheNode(t *testing.T) {
	e := startEmbedded(t)
	e.master.Close()
	e.master = &mqtt.Master{Broker: e.broker, Sink: e.sink, LogTimeout: 3 * time.Second, LogQueue: 4}
	if err := e.master.Open(); err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	var cancelled atomic.Bool
	chunk := []byte(strings.Repeat("x", 32<<10))
	a := &mqtt.Agent{URL: e.url, Node: "n1", Password: "pw1", TLS: e.agentTLS(t),
		Logs: func(ctx context.Context, req core.LogRequest, w func([]byte) error) error {
			for ctx.Err() == nil {
				if err := w(chunk); err != nil {
					return err
				}
				sent.Add(1)
			}
			cancelled.Store(true)
			return nil
		}}
	if err := a.Open(); err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	waitFor(t, "agent connected", func() bool { return a.Report(&core.NodeReport{Node: "n1"}) == nil })
	rc, err := e.master.Logs(context.Background(), "n1", core.LogRequest{Pod: "p", Follow: true, Tail: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// Nobody reads rc. The stream must end instead of blocking the broker.
	// The master ends the stream and tells the agent to stop.
	waitFor(t, "the master to cancel the stream at the agent", cancelled.Load)
	if n := sent.Load(); n < 5 {
		t.Fatalf("the agent sent %d chunks; the queue holds 4", n)
	}
	// The node's connection still works: a report gets through.
	if err := a.Report(&core.NodeReport{Node: "n1", Labels: map[string]string{"after": "stall"}}); err != nil {
		t.Fatalf("report after a stalled log reader: %v", err)
	}
	waitFor(t, "the report after the stall", func() bool {
		r, _, _ := e.sink.get("n1")
		return r != nil && r.Labels["after"] == "stall"
	})
	_, err = io.ReadAll(rc)
	if err == nil || !strings.Contains(err.Error(), "too slow") {
		t.Fatalf("reading the abandoned stream: err = %v, want it ended as too slow", err)
	}
	// And the master shuts down promptly.
	done := make(chan struct{})
	go func() { e.master.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("master Close hangs after a stalled log stream")
	}
}

// Revoking a node disconnects it and keeps it out.
func TestBroker_Disconnect(t *testing.T) {
	e := startEmbedded(t)
	c, err := rawClient(t, e.url, "node:n1", "pw1", mqtt.ClientID("n1"), e.agentTLS(t))
	if err != nil {
		t.Fatal(err)
	}
	e.revoke("n1")
	e.broker.Disconnect("n1")
	waitFor(t, "n1 disconnected", func() bool { return !c.IsConnectionOpen() })
	if _, err := rawClient(t, e.url, "node:n1", "pw1", mqtt.ClientID("n1"), e.agentTLS(t)); err == nil {
		t.Fatal("a revoked node connected again")
	}
	var _ paho.Client = c
}

// An agent whose credentials the broker keeps refusing joins again and
// connects with what the join gave it.
func TestAgent_RejoinsAfterRefusals(t *testing.T) {
	e := startEmbedded(t)
	var rejoins atomic.Int32
	a := &mqtt.Agent{URL: e.url, Node: "n1", Password: "stale", TLS: e.agentTLS(t),
		Rejoin: func(ctx context.Context) (string, string, error) {
			rejoins.Add(1)
			return e.url, "pw1", nil
		}}
	if err := a.Open(); err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	waitFor(t, "the agent online after joining again", func() bool { _, on, _ := e.sink.get("n1"); return on })
	if n := rejoins.Load(); n != 1 {
		t.Fatalf("Rejoin called %d times, want 1", n)
	}
}

// A node revoked while its session stays up (it reconnected just before
// the revocation) is stopped at its next packet.
func TestBroker_RevokedNodeStoppedAtNextPacket(t *testing.T) {
	e := startEmbedded(t)
	c, err := rawClient(t, e.url, "node:n1", "pw1", mqtt.ClientID("n1"), e.agentTLS(t))
	if err != nil {
		t.Fatal(err)
	}
	e.revoke("n1") // no Disconnect: the session raced the revocation
	c.Publish("edge/node/n1/report", 1, false, `{"labels":{"after":"revoke"}}`).WaitTimeout(time.Second)
	waitFor(t, "the revoked node disconnected", func() bool { return !c.IsConnectionOpen() })
	if r, _, _ := e.sink.get("n1"); r != nil {
		t.Fatalf("a revoked node's report reached the master: %+v", r)
	}
}

// A node flooding reports gets them stored at most every 50 ms, and the
// latest one always arrives.
func TestMaster_ReportRateLimited(t *testing.T) {
	e := startEmbedded(t)
	c, err := rawClient(t, e.url, "node:n1", "pw1", mqtt.ClientID("n1"), e.agentTLS(t))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 0; i < 500; i++ {
		c.Publish("edge/node/n1/report", 0, false, fmt.Sprintf(`{"labels":{"seq":"%d"}}`, i))
	}
	c.Publish("edge/node/n1/report", 1, false, `{"labels":{"seq":"last"}}`).WaitTimeout(5 * time.Second)
	waitFor(t, "the last report stored", func() bool {
		r, _, _ := e.sink.get("n1")
		return r != nil && r.Labels["seq"] == "last"
	})
	elapsed := time.Since(start)
	e.sink.mu.Lock()
	stored := e.sink.stored
	e.sink.mu.Unlock()
	if limit := int(elapsed/(50*time.Millisecond)) + 2; stored > limit {
		t.Fatalf("%d of 501 reports stored in %s; at most %d at one per 50 ms", stored, elapsed, limit)
	}
}

// A QoS 0 publish on a foreign topic, which mochi would drop silently (and
// let the node repeat at will), disconnects the node as a QoS 1 one does.
func TestBroker_ForeignQoS0Disconnects(t *testing.T) {
	e := startEmbedded(t)
	c, err := rawClient(t, e.url, "node:n1", "pw1", mqtt.ClientID("n1"), e.agentTLS(t))
	if err != nil {
		t.Fatal(err)
	}
	c.Publish("edge/node/n2/report", 0, false, `{}`)
	waitFor(t, "the node disconnected", func() bool { return !c.IsConnectionOpen() })
}

// A node that disconnects cleanly without saying "offline" (MQTT then drops
// its will) is offline all the same.
func TestBroker_CleanDisconnectIsOffline(t *testing.T) {
	e := startEmbedded(t)
	c, err := rawClient(t, e.url, "node:n1", "pw1", mqtt.ClientID("n1"), e.agentTLS(t))
	if err != nil {
		t.Fatal(err)
	}
	c.Publish("edge/node/n1/online", 1, true, "online").WaitTimeout(5 * time.Second)
	waitFor(t, "n1 online", func() bool { _, on, _ := e.sink.get("n1"); return on })
	c.Disconnect(100)
	waitFor(t, "n1 offline after a clean disconnect", func() bool { _, on, _ := e.sink.get("n1"); return !on })
}
