package mqtt_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/mqtt"
)

// sink records what reaches the master.
type sink struct {
	mu      sync.Mutex
	stored  int // reports stored
	reports map[string]*core.NodeReport
	online  map[string]bool
	events  []core.PodEvent
}

func newSink() *sink {
	return &sink{reports: map[string]*core.NodeReport{}, online: map[string]bool{}}
}

func (s *sink) NodeReport(ctx context.Context, r *core.NodeReport) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reports[r.Node] = r
	s.stored++
	return nil
}

func (s *sink) NodeOnline(ctx context.Context, node string, online bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.online[node] = online
	return nil
}

func (s *sink) NodeEvents(ctx context.Context, node string, events []core.PodEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, events...)
	return nil
}

func (s *sink) get(node string) (*core.NodeReport, bool, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	on, seen := s.online[node]
	return s.reports[node], on, seen
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type env struct {
	broker *mqtt.Broker
	master *mqtt.Master
	sink   *sink
	pki    *api.PKI
	url    string
	credMu sync.Mutex
	creds  map[string]string
}

func (e *env) revoke(node string) {
	e.credMu.Lock()
	defer e.credMu.Unlock()
	delete(e.creds, node)
}

func startEmbedded(t *testing.T) *env { return startEmbeddedWith(t, nil) }

// startEmbeddedWith starts a broker and master; configure may change the
// broker's settings before it opens.
func startEmbeddedWith(t *testing.T, configure func(*mqtt.Broker)) *env {
	t.Helper()
	pki, err := api.LoadOrCreatePKI(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{pki: pki, sink: newSink(), creds: map[string]string{"n1": "pw1", "n2": "pw2"}}
	e.broker = &mqtt.Broker{Addr: "127.0.0.1:0", TLS: pki.ServerTLS(), CheckPassword: func(node, pw string) bool {
		e.credMu.Lock()
		defer e.credMu.Unlock()
		return e.creds[node] != "" && e.creds[node] == pw
	}, Known: func(node string) bool {
		e.credMu.Lock()
		defer e.credMu.Unlock()
		return e.creds[node] != ""
	}}
	if configure != nil {
		configure(e.broker)
	}
	if err := e.broker.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.broker.Close() })
	e.master = &mqtt.Master{Broker: e.broker, Sink: e.sink, LogTimeout: 3 * time.Second}
	if err := e.master.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.master.Close() })
	e.url = "ssl://" + e.broker.Address()
	return e
}

func (e *env) agentTLS(t *testing.T) *tls.Config {
	cfg, err := api.CATLS(e.pki.CAPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func startAgent(t *testing.T, url, node, pw string, tlsCfg *tls.Config, desired chan *core.DesiredState) *mqtt.Agent {
	t.Helper()
	var a *mqtt.Agent
	a = &mqtt.Agent{URL: url, Node: node, Password: pw, TLS: tlsCfg,
		OnDesired: func(ds *core.DesiredState) {
			select {
			case desired <- ds:
			default:
			}
		},
		OnConnect: func() {
			go a.Report(&core.NodeReport{Node: node, Labels: map[string]string{"x": "y"}})
		},
		Logs: func(ctx context.Context, req core.LogRequest, w func([]byte) error) error {
			if req.Pod == "missing" {
				return core.Errorf(core.ENOTFOUND, "pod %q not on this node", req.Pod)
			}
			for i := 0; i < 3; i++ {
				if err := w([]byte(fmt.Sprintf("%s line %d\n", req.Pod, i))); err != nil {
					return err
				}
			}
			if req.Follow {
				<-ctx.Done()
			}
			return nil
		},
	}
	if err := a.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

func TestEmbedded_DesiredReportOnlineLogs(t *testing.T) {
	e := startEmbedded(t)
	ctx := context.Background()
	// Desired state published before the agent connects is retained.
	if err := e.master.PublishDesired(ctx, &core.DesiredState{Node: "n1", Hash: "h1"}); err != nil {
		t.Fatal(err)
	}
	desired := make(chan *core.DesiredState, 4)
	a := startAgent(t, e.url, "n1", "pw1", e.agentTLS(t), desired)
	select {
	case ds := <-desired:
		if ds.Hash != "h1" {
			t.Fatalf("got desired %q", ds.Hash)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("retained desired state not delivered")
	}
	waitFor(t, "report and online", func() bool {
		r, on, _ := e.sink.get("n1")
		return r != nil && r.Labels["x"] == "y" && on
	})

	rc, err := e.master.Logs(ctx, "n1", core.LogRequest{Pod: "web", Tail: -1})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "web line 0\nweb line 1\nweb line 2\n" {
		t.Fatalf("logs = %q", b)
	}
	if _, err := e.master.Logs(ctx, "n1", core.LogRequest{Pod: "missing"}); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("error for a missing pod: %v", err)
	}
	// A follow ends when the reader closes it.
	rc, err = e.master.Logs(ctx, "n1", core.LogRequest{Pod: "f", Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 9)
	if _, err := io.ReadFull(rc, buf); err != nil || string(buf) != "f line 0\n" {
		t.Fatalf("follow read %q %v", buf, err)
	}
	rc.Close()

	// Events arrive in order.
	if err := a.Events([]core.PodEvent{{ID: 1, Reason: "a"}, {ID: 2, Reason: "b"}}); err != nil {
		t.Fatal(err)
	}
	if err := a.Events([]core.PodEvent{{ID: 3, Reason: "c"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "events", func() bool {
		e.sink.mu.Lock()
		defer e.sink.mu.Unlock()
		return len(e.sink.events) == 3
	})
	for i, ev := range e.sink.events {
		if ev.ID != uint64(i+1) {
			t.Fatalf("events out of order: %+v", e.sink.events)
		}
	}

	// Killing the connection without DISCONNECT fires the will.
	a.Close()
	waitFor(t, "offline after close", func() bool { _, on, _ := e.sink.get("n1"); return !on })
}

func TestEmbedded_LogsFromAbsentAgent(t *testing.T) {
	e := startEmbedded(t)
	_, err := e.master.Logs(context.Background(), "n2", core.LogRequest{Pod: "x"})
	if core.ErrorCode(err) != core.EUNAVAILABLE || !strings.Contains(err.Error(), `node "n2" did not answer`) {
		t.Fatalf("err = %v", err)
	}
}

func rawClient(t *testing.T, url, user, pw, id string, tlsCfg *tls.Config) (paho.Client, error) {
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(user).SetPassword(pw).
		SetTLSConfig(tlsCfg).SetConnectTimeout(5 * time.Second).SetAutoReconnect(false)
	c := paho.NewClient(opts)
	tok := c.Connect()
	tok.WaitTimeout(10 * time.Second)
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

func TestEmbedded_AuthAndACL(t *testing.T) {
	e := startEmbedded(t)
	tlsCfg := e.agentTLS(t)
	t.Run("WrongPassword", func(t *testing.T) {
		if _, err := rawClient(t, e.url, "node:n1", "nope", mqtt.ClientID("n1"), tlsCfg); err == nil {
			t.Fatal("connected with a wrong password")
		}
	})
	t.Run("NoNodeUser", func(t *testing.T) {
		if _, err := rawClient(t, e.url, "admin", "pw1", "x", tlsCfg); err == nil {
			t.Fatal("connected without a node user")
		}
	})
	t.Run("ForeignClientID", func(t *testing.T) {
		if _, err := rawClient(t, e.url, "node:n1", "pw1", mqtt.ClientID("n2"), tlsCfg); err == nil {
			t.Fatal("n1 connected with n2's client id (would inherit its session)")
		}
	})
	t.Run("WillOffLiveness", func(t *testing.T) {
		// Its own reply topic, retained: mochi would keep it forever.
		opts := paho.NewClientOptions().AddBroker(e.url).SetClientID(mqtt.ClientID("n1")).SetUsername("node:n1").SetPassword("pw1").
			SetTLSConfig(tlsCfg).SetWill("edge/node/n1/reply/x", strings.Repeat("w", 60<<10), 1, true).SetAutoReconnect(false)
		c := paho.NewClient(opts)
		tok := c.Connect()
		tok.WaitTimeout(10 * time.Second)
		if tok.Error() == nil {
			c.Disconnect(0)
			t.Fatal("connected with a retained will on its reply topic")
		}
	})
	t.Run("ForeignWill", func(t *testing.T) {
		opts := paho.NewClientOptions().AddBroker(e.url).SetClientID(mqtt.ClientID("n1")).SetUsername("node:n1").SetPassword("pw1").
			SetTLSConfig(tlsCfg).SetWill("edge/node/n2/online", "offline", 1, true).SetAutoReconnect(false)
		c := paho.NewClient(opts)
		tok := c.Connect()
		tok.WaitTimeout(10 * time.Second)
		if tok.Error() == nil {
			c.Disconnect(0)
			t.Fatal("connected with a will on n2's topic")
		}
	})
	t.Run("PublishOnOtherNodesTopic", func(t *testing.T) {
		c, err := rawClient(t, e.url, "node:n1", "pw1", mqtt.ClientID("n1"), tlsCfg)
		if err != nil {
			t.Fatal(err)
		}
		c.Publish("edge/node/n2/report", 1, false, `{"node":"n2","labels":{"evil":"yes"}}`).WaitTimeout(5 * time.Second)
		// The broker drops a node that publishes on a foreign topic.
		waitFor(t, "the offending connection to close", func() bool { return !c.IsConnectionOpen() })
		c2, err := rawClient(t, e.url, "node:n1", "pw1", mqtt.ClientID("n1"), tlsCfg)
		if err != nil {
			t.Fatal(err)
		}
		// The payload cannot claim another node: such a report is refused.
		c2.Publish("edge/node/n1/report", 1, false, `{"node":"n2"}`).WaitTimeout(5 * time.Second)
		c2.Publish("edge/node/n1/report", 1, false, `{"node":"n1","labels":{"kubernetes.io/hostname":"n2"}}`).WaitTimeout(5 * time.Second)
		c2.Publish("edge/node/n1/report", 1, false, `{"labels":{"zone":"shed"}}`).WaitTimeout(5 * time.Second)
		waitFor(t, "n1's own report", func() bool { r, _, _ := e.sink.get("n1"); return r != nil })
		if r, _, _ := e.sink.get("n1"); r.Labels["zone"] != "shed" || r.Labels[core.LabelHostname] != "" {
			t.Fatalf("n1's stored report is %+v, want only the valid one", r)
		}
		if r, _, seen := e.sink.get("n2"); r != nil || seen {
			t.Fatalf("n1's forged messages for n2 reached the master: report=%v online-seen=%v", r, seen)
		}
	})
	t.Run("SubscribeToOtherNodesDesired", func(t *testing.T) {
		if err := e.master.PublishDesired(context.Background(), &core.DesiredState{Node: "n2", Hash: "secret"}); err != nil {
			t.Fatal(err)
		}
		c, err := rawClient(t, e.url, "node:n1", "pw1", mqtt.ClientID("n1"), tlsCfg)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan string, 1)
		tok := c.Subscribe("edge/node/n2/desired", 1, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) })
		tok.WaitTimeout(5 * time.Second)
		st := tok.(*paho.SubscribeToken)
		if code := st.Result()["edge/node/n2/desired"]; code != 0x80 {
			t.Fatalf("subscription to n2's desired state granted (code %#x)", code)
		}
		tok = c.Subscribe("edge/node/#", 1, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) })
		tok.WaitTimeout(5 * time.Second)
		if code := tok.(*paho.SubscribeToken).Result()["edge/node/#"]; code != 0x80 {
			t.Fatalf("wildcard subscription granted (code %#x)", code)
		}
		select {
		case m := <-got:
			t.Fatalf("n1 received %q", m)
		case <-time.After(300 * time.Millisecond):
		}
	})
}

func TestAllowed(t *testing.T) {
	for _, tt := range []struct {
		topic string
		write bool
		want  bool
	}{
		{"edge/node/n1/report", true, true},
		{"edge/node/n1/online", true, true},
		{"edge/node/n1/reply/abc", true, true},
		{"edge/node/n1/reply/abc/x", true, false},
		{"edge/node/n1/reply/+", true, false},
		{"edge/node/n1/desired", true, false},
		{"edge/node/n1/desired", false, true},
		{"edge/node/n1/cmd", false, true},
		{"edge/node/n1/report", false, false},
		{"edge/node/n2/report", true, false},
		{"edge/node/n2/desired", false, false},
		{"edge/node/+/desired", false, false},
		{"edge/master/epoch", false, true},
		{"edge/master/epoch", true, false},
		{"#", false, false},
	} {
		if got := mqtt.Allowed("n1", tt.topic, tt.write); got != tt.want {
			t.Errorf("Allowed(n1, %q, write=%v) = %v, want %v", tt.topic, tt.write, got, tt.want)
		}
	}
}

// The master works against an external broker: Debian's mosquitto.
func TestExternalMosquitto(t *testing.T) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
		if _, err := os.Stat(bin); err != nil {
			t.Fatal("mosquitto not installed: apt-get install mosquitto (make test installs it as root)")
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n", port)), 0o644)
	cmd := exec.Command(bin, "-c", conf)
	var out strings.Builder
	cmd.Stderr = &out
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mosquitto:\n%s", out.String())
		}
	})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	waitFor(t, "mosquitto listening", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	s := newSink()
	m := &mqtt.Master{URL: url, Sink: s, LogTimeout: 3 * time.Second}
	if err := m.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := m.PublishDesired(context.Background(), &core.DesiredState{Node: "n1", Hash: "ext"}); err != nil {
		t.Fatal(err)
	}
	desired := make(chan *core.DesiredState, 4)
	startAgent(t, url, "n1", "", nil, desired)
	select {
	case ds := <-desired:
		if ds.Hash != "ext" {
			t.Fatalf("desired %q", ds.Hash)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("desired state not delivered through mosquitto")
	}
	waitFor(t, "report through mosquitto", func() bool { r, on, _ := s.get("n1"); return r != nil && on })
	rc, err := m.Logs(context.Background(), "n1", core.LogRequest{Pod: "p"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	if !strings.HasPrefix(string(b), "p line 0") {
		t.Fatalf("logs through mosquitto: %q", b)
	}
}
