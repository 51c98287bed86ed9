// Command edgeagent runs a worker node: it joins the master, keeps the pods
// it is given running through containerd, and reports over MQTT.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ctrlog "github.com/containerd/log"
	"github.com/spf13/pflag"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/discovery"
	"github.com/edgeorch/edge/edgeagent"
	"github.com/edgeorch/edge/internal/daemon"
	"github.com/edgeorch/edge/internal/fsutil"
	"github.com/edgeorch/edge/internal/version"
	"github.com/edgeorch/edge/mqtt"
)

func main() { daemon.Main("edgeagent", NewMain(), "shutting down; pods keep running") }

// Main is the agent process.
type Main struct {
	Master     string
	Token      string
	Name       string
	DataDir    string
	Containerd string
	Labels     map[string]string
	KeepAlive  time.Duration
	MDNSIfaces []string
	CNIBinDir  string
	CNIConfDir string
	PodCIDR    string
	Bridge     string
	Debug      bool

	Log   *slog.Logger
	Agent *edgeagent.Agent

	ctx       context.Context
	reporter  reporter
	rejoining atomic.Bool
}

func NewMain() *Main { return &Main{} }

func (m *Main) ParseFlags(args []string) error {
	fs := pflag.NewFlagSet("edgeagent", pflag.ContinueOnError)
	host, _ := os.Hostname()
	fs.StringVar(&m.Master, "master", "", "master API URL (https://host:7443); found by mDNS when empty")
	fs.StringVar(&m.Token, "token", os.Getenv("EDGE_TOKEN"), "join token (K10<ca-hash>::<id>.<secret>); also $EDGE_TOKEN")
	fs.StringVar(&m.Name, "name", strings.ToLower(host), "node name")
	fs.StringVar(&m.DataDir, "data-dir", "/var/lib/edge/agent", "credentials, last desired state and pod logs")
	fs.StringVar(&m.Containerd, "containerd", "/run/containerd/containerd.sock", "containerd socket")
	fs.StringToStringVar(&m.Labels, "labels", nil, "extra node labels k=v,...")
	fs.DurationVar(&m.KeepAlive, "keepalive", 3*time.Second, "MQTT keepalive; a silent node is noticed after 1.5x")
	fs.StringSliceVar(&m.MDNSIfaces, "mdns-interface", nil, "interfaces to look for the master on (default all)")
	fs.StringVar(&m.CNIBinDir, "cni-bin-dir", "/usr/lib/cni", "CNI plugin binaries")
	fs.StringVar(&m.CNIConfDir, "cni-conf-dir", "", "CNI network configs (default: a bridge network the agent writes under --data-dir)")
	fs.StringVar(&m.PodCIDR, "pod-cidr", "10.42.0.0/24", "pod addresses on this node (default bridge network)")
	fs.StringVar(&m.Bridge, "bridge", "edge0", "bridge of the default pod network")
	fs.BoolVar(&m.Debug, "debug", false, "verbose logs")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: edgeagent --token TOKEN [--master URL] [flags]\n\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println("edgeagent", version.Version)
		return pflag.ErrHelp
	}
	if m.Token == "" {
		return errors.New("--token is required: use the master's join-token file or 'edgectl token create'")
	}
	if _, err := api.ParseJoinToken(m.Token); err != nil {
		return fmt.Errorf("--token: %s", api.ErrorString(err))
	}
	n := &core.Node{TypeMeta: core.TypeMeta{Kind: core.KindNode}, Metadata: core.ObjectMeta{Name: m.Name, Labels: m.Labels}}
	if err := core.Validate(n); err != nil {
		return fmt.Errorf("--name/--labels: %s", api.ErrorString(err))
	}
	return nil
}

// credentials are what joining yields; kept so an agent restarted while the
// master is down can still reach the broker when it returns.
type credentials struct {
	Master   string `json:"master"`
	CAHash   string `json:"caHash"`
	Node     string `json:"node"`
	MQTTURL  string `json:"mqttURL"`
	Password string `json:"mqttPassword"`
	CACert   string `json:"caCert"`
}

func (m *Main) credPath() string { return filepath.Join(m.DataDir, "credentials.json") }

// credentials returns saved credentials for this token's master, or joins.
func (m *Main) credentials(ctx context.Context) (*credentials, error) {
	jt, _ := api.ParseJoinToken(m.Token)
	if b, err := os.ReadFile(m.credPath()); err == nil {
		var c credentials
		if json.Unmarshal(b, &c) == nil && c.CAHash == jt.CAHash && c.Node == m.Name && (m.Master == "" || m.Master == c.Master) {
			return &c, nil
		}
	}
	delay := time.Second
	for {
		c, err := m.join(ctx, jt)
		if err == nil {
			b, _ := json.Marshal(c)
			if err := fsutil.WriteFileAtomic(m.credPath(), b, 0o600); err != nil {
				return nil, err
			}
			return c, nil
		}
		code := core.ErrorCode(err)
		if code == core.EUNAUTHORIZED || code == core.EINVALID {
			return nil, err // retrying will not help
		}
		m.Log.Warn("joining the master failed; retrying", "err", api.ErrorString(err))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}

func (m *Main) join(ctx context.Context, jt api.JoinToken) (*credentials, error) {
	master := m.Master
	if master == "" {
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		found, err := discovery.Find(fctx, jt.CAHash, m.MDNSIfaces, m.Log)
		cancel()
		if err != nil {
			return nil, core.Errorf(core.EUNAVAILABLE, "%v", err)
		}
		master = found.URL()
		m.Log.Info("found the master by mDNS", "url", master, "instance", found.Instance)
	}
	client := api.NewClient(master, jt.String(), api.PinnedTLS(jt.CAHash))
	resp, err := client.Join(ctx, m.Name)
	if err != nil {
		return nil, err
	}
	m.Log.Info("joined the cluster", "master", master)
	return &credentials{Master: m.Master, CAHash: jt.CAHash, Node: m.Name, MQTTURL: resp.MQTTURL, Password: resp.MQTTPassword, CACert: resp.CACert}, nil
}

// Run joins (or reuses saved credentials) and starts the agent. The agent
// starts running its saved pods before the master answers.
func (m *Main) Run(ctx context.Context) error {
	if m.Log == nil {
		m.Log = daemon.Logger(m.Debug, "node", m.Name)
	}
	if !m.Debug {
		ctrlog.SetLevel("warn") // containerd's client logs every failed registry request at info
	}
	if err := os.MkdirAll(m.DataDir, 0o700); err != nil {
		return err
	}
	m.Agent = &edgeagent.Agent{Name: m.Name, DataDir: m.DataDir, Containerd: m.Containerd, Labels: m.Labels,
		Version: version.Version, Log: m.Log}
	if net, err := m.network(); err != nil {
		m.Log.Warn("pod networking disabled: pods get a loopback-only namespace", "err", err)
	} else {
		m.Agent.Network = net
	}
	if err := m.Agent.Open(); err != nil {
		return err
	}
	creds, err := m.credentials(ctx)
	if err != nil {
		return err
	}
	m.ctx = ctx
	m.Agent.Reporter = &m.reporter
	return m.connect(creds)
}

// connect opens the MQTT connection with creds.
func (m *Main) connect(creds *credentials) error {
	tlsConfig, err := api.CATLS([]byte(creds.CACert))
	if err != nil {
		return err
	}
	conn := &mqtt.Agent{URL: creds.MQTTURL, Node: m.Name, Password: creds.Password, KeepAlive: m.KeepAlive, Log: m.Log,
		OnDesired: m.Agent.SetDesired, OnConnect: m.Agent.ForceReport, Logs: m.Agent.Logs, OnRefused: m.refused}
	if strings.HasPrefix(creds.MQTTURL, "ssl://") || strings.HasPrefix(creds.MQTTURL, "tls://") {
		conn.TLS = tlsConfig
	}
	if err := conn.Open(); err != nil {
		return err
	}
	m.reporter.set(conn)
	return nil
}

// refused re-joins with the token when the broker keeps refusing the saved
// credentials (the master's data was reset or restored): a node must not
// stay locked out of a master it has a valid token for.
func (m *Main) refused(count int) {
	if count < 3 || !m.rejoining.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer m.rejoining.Store(false)
		m.Log.Warn("joining again: the master no longer accepts this node's credentials")
		if old := m.reporter.set(nil); old != nil {
			old.Close()
		}
		os.Remove(m.credPath())
		creds, err := m.credentials(m.ctx)
		if err != nil {
			m.Log.Error("joining again failed", "err", api.ErrorString(err))
			return
		}
		if err := m.connect(creds); err != nil {
			m.Log.Error("connecting after joining again failed", "err", err)
		}
	}()
}

// reporter hands reports to the current MQTT connection, which a re-join
// replaces while the agent runs.
type reporter struct {
	mu  sync.Mutex
	cur *mqtt.Agent
}

func (r *reporter) set(a *mqtt.Agent) (old *mqtt.Agent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, r.cur = r.cur, a
	return old
}

func (r *reporter) get() *mqtt.Agent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur
}

func (r *reporter) Report(rep *core.NodeReport) error {
	if c := r.get(); c != nil {
		return c.Report(rep)
	}
	return core.Errorf(core.EUNAVAILABLE, "not connected")
}

func (r *reporter) Events(events []core.PodEvent) error {
	if c := r.get(); c != nil {
		return c.Events(events)
	}
	return core.Errorf(core.EUNAVAILABLE, "not connected")
}

func (m *Main) network() (edgeagent.Network, error) {
	if _, err := os.Stat(filepath.Join(m.CNIBinDir, "bridge")); err != nil {
		return nil, fmt.Errorf("no CNI plugins in %s (apt-get install containernetworking-plugins)", m.CNIBinDir)
	}
	return edgeagent.NewCNI(m.CNIBinDir, m.CNIConfDir, filepath.Join(m.DataDir, "cni"), m.Bridge, m.PodCIDR)
}

// Close stops the agent; containers keep running.
func (m *Main) Close() error {
	if c := m.reporter.set(nil); c != nil {
		c.Close()
	}
	if m.Agent != nil {
		return m.Agent.Close()
	}
	return nil
}
