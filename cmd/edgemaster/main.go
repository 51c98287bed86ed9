// Command edgemaster runs the control plane: API server, scheduler and
// controllers, SQLite store, embedded MQTT broker and mDNS advertisement.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/discovery"
	"github.com/edgeorch/edge/images"
	"github.com/edgeorch/edge/internal/daemon"
	"github.com/edgeorch/edge/internal/fsutil"
	"github.com/edgeorch/edge/internal/preflight"
	"github.com/edgeorch/edge/internal/version"
	"github.com/edgeorch/edge/mqtt"
	"github.com/edgeorch/edge/sqlite"
)

func main() { daemon.Main("edgemaster", NewMain(), "shutting down") }

// Main is the master process.
type Main struct {
	DataDir    string
	APIAddr    string
	MQTTAddr   string
	MQTTURL    string
	NoMDNS     bool
	Registries string
	ContentDir string
	// ImageCacheSize is --image-cache-size: the content store's disk
	// budget, a size or a percentage of its disk.
	ImageCacheSize  string
	ImageGCInterval time.Duration
	TLSSANs         []string
	NodeLostGrace   time.Duration
	StartupGrace    time.Duration
	MaxNodes        int
	JoinRate        float64
	Debug           bool
	Network         core.NetworkConfig
	// Check runs the preflight checks (edgemaster check) instead of the master.
	Check  bool
	Stdout io.Writer // where check prints; default os.Stdout

	Log         *slog.Logger
	DB          *sqlite.DB
	PKI         *api.PKI
	Bootstrap   *api.Bootstrap
	Auth        *api.NodeAuth
	Broker      *mqtt.Broker
	Bus         *mqtt.Master
	Controllers *core.Controllers
	API         *api.Server
	Advertiser  *discovery.Advertiser
	// RegistriesConfig is --registries, read and checked by ParseFlags.
	RegistriesConfig *images.RegistriesConfig
	Content          *images.Store
	Registry         *images.Registry
	Collector        *images.Collector

	airgap     chan struct{} // closed once DATA_DIR/images was imported
	stopAirgap context.CancelFunc
}

func NewMain() *Main { return &Main{} }

// ParseFlags reads the command line.
func (m *Main) ParseFlags(args []string) error {
	fs := pflag.NewFlagSet("edgemaster", pflag.ContinueOnError)
	fs.StringVar(&m.DataDir, "data-dir", "/var/lib/edge/master", "state, certificates, admin.conf and join-token")
	fs.StringVar(&m.APIAddr, "api-addr", ":7443", "HTTPS API listen address")
	fs.StringVar(&m.MQTTAddr, "mqtt-addr", ":8883", "embedded MQTT broker (TLS) listen address")
	fs.StringVar(&m.MQTTURL, "mqtt-url", "", "use this external broker (tcp://host:1883, ssl://...) instead of the embedded one")
	fs.BoolVar(&m.NoMDNS, "no-mdns", false, "do not advertise _edgemaster._tcp on the LAN")
	fs.StringVar(&m.Registries, "registries", "", "upstream registries (mirrors, auth, TLS) the master pulls images through from, in k3s registries.yaml format")
	fs.StringVar(&m.ContentDir, "content-dir", "", "image content store, served at /v2/ (default DATA_DIR/content)")
	fs.StringVar(&m.ImageCacheSize, "image-cache-size", "10Gi", "disk budget of the image store: a size (10Gi, 500M) or a percentage of its disk (25%); the least recently pulled images that no pod uses and that were not imported go first")
	fs.DurationVar(&m.ImageGCInterval, "image-gc-interval", 10*time.Minute, "how often the image store is collected")
	fs.StringSliceVar(&m.TLSSANs, "tls-san", nil, "extra names or addresses for the serving certificate")
	fs.DurationVar(&m.NodeLostGrace, "node-lost-grace", 5*time.Second, "how long a node may be unreachable before its replicas move")
	fs.DurationVar(&m.StartupGrace, "startup-grace", 30*time.Second, "after a master restart, how long agents have to reconnect before their nodes count as unreachable")
	fs.IntVar(&m.MaxNodes, "max-nodes", 4000, "most nodes the cluster takes (0: no cap)")
	fs.Float64Var(&m.JoinRate, "join-rate", 20, "joins a second the API takes, in bursts of ten times that (-1: no limit)")
	clusterCIDR := fs.String("cluster-cidr", "10.42.0.0/16", "pod addresses of the whole cluster; each node gets a subnet of it")
	nodeMask := fs.Int("node-cidr-mask-size", 24, "prefix length of each node's pod subnet")
	serviceCIDR := fs.String("service-cidr", "10.43.0.0/16", "services' virtual IPs")
	nodePorts := fs.String("service-node-port-range", "30000-32767", "ports NodePort and LoadBalancer services open on every node")
	fs.BoolVar(&m.Debug, "debug", false, "verbose logs")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: edgemaster [flags]\n"+
			"       edgemaster check [flags]   check this machine (data dir, disk, clock, ports, SQLite) and exit\n\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println("edgemaster", version.Version)
		return pflag.ErrHelp
	}
	if args := fs.Args(); len(args) == 1 && args[0] == "check" {
		m.Check = true
	} else if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q (the only command is check)", args)
	}
	var err error
	if m.Network, err = core.ParseNetworkConfig(*clusterCIDR, *nodeMask, *serviceCIDR); err != nil {
		return err
	}
	lo, hi, ok := strings.Cut(*nodePorts, "-")
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || a < 1 || b > 65535 || a > b {
		return fmt.Errorf("--service-node-port-range %q: want two ports FIRST-LAST, such as 30000-32767", *nodePorts)
	}
	m.Network.NodePortMin, m.Network.NodePortMax = int32(a), int32(b)
	for _, addr := range []string{m.APIAddr, m.MQTTAddr} {
		if p := port(addr); p > 0 && (addr != m.MQTTAddr || m.MQTTURL == "") {
			m.Network.ReservedPorts = append(m.Network.ReservedPorts, int32(p))
		}
	}
	if m.Registries != "" {
		if m.RegistriesConfig, err = images.LoadRegistries(m.Registries); err != nil {
			return fmt.Errorf("--registries: %w", err)
		}
	}
	return nil
}

// Run starts every component; it returns once they serve.
func (m *Main) Run(ctx context.Context) error {
	if m.Check {
		rs := preflight.Run(ctx, m.checks())
		if m.Stdout == nil {
			m.Stdout = os.Stdout
		}
		if failed := preflight.Print(m.Stdout, rs); failed > 0 {
			return fmt.Errorf("%d of %d checks failed", failed, len(rs))
		}
		return daemon.ErrDone
	}
	if m.Log == nil {
		m.Log = daemon.Logger(m.Debug)
	}
	if err := os.MkdirAll(m.DataDir, 0o700); err != nil {
		return err
	}
	var err error
	if m.PKI, err = api.LoadOrCreatePKI(m.DataDir, m.TLSSANs); err != nil {
		return fmt.Errorf("certificates in %s: %w", m.DataDir, err)
	}
	m.DB = sqlite.NewDB(filepath.Join(m.DataDir, "state.db"))
	if m.DB.SecretsKey, err = sqlite.LoadOrCreateKey(filepath.Join(m.DataDir, "secrets.key")); err != nil {
		return err
	}
	if err := m.DB.Open(); err != nil {
		return err
	}
	m.Bootstrap = &api.Bootstrap{DataDir: m.DataDir, PKI: m.PKI, Tokens: m.DB, Log: m.Log}
	if _, err := m.Bootstrap.Ensure(ctx, m.APIAddr); err != nil {
		return err
	}
	m.Auth = &api.NodeAuth{Tokens: m.DB, MaxNodes: m.MaxNodes}
	if err := m.Auth.Load(ctx); err != nil {
		return err
	}
	reports := &core.Reports{Store: m.DB, Now: time.Now, MasterVersion: version.Version}
	if m.MQTTURL == "" { // an external broker authenticates nodes its own way
		reports.Known = m.Auth.Known
	}
	m.Bus = &mqtt.Master{Sink: reports, Log: m.Log}
	contentDir := m.ContentDir
	if contentDir == "" {
		// Not DATA_DIR/images: that is where image tarballs are dropped
		// for import.
		contentDir = filepath.Join(m.DataDir, "content")
	}
	if m.Content, err = images.OpenStore(contentDir); err != nil {
		return err
	}
	m.Controllers = &core.Controllers{Store: m.DB, Bus: m.Bus, Log: m.Log, NodeLostGrace: m.NodeLostGrace,
		Online: reports.Online, StartupGrace: m.StartupGrace, Network: m.Network, PinnedImages: m.Content.PinnedRefs}
	reports.DesiredHash = m.Controllers.CheckDesired
	if m.MQTTURL == "" {
		m.Broker = &mqtt.Broker{Addr: m.MQTTAddr, TLS: m.PKI.ServerTLS(), Log: m.Log, CheckPassword: m.Auth.CheckMQTT, Known: m.Auth.Known}
		if err := m.Broker.Open(); err != nil {
			return err
		}
		m.Auth.Disconnect = m.Broker.Disconnect
		m.Bus.Broker = m.Broker
	} else {
		m.Bus.URL = m.MQTTURL
	}
	if err := m.Bus.Open(); err != nil {
		return err
	}
	m.Controllers.Open()
	if m.ImageCacheSize == "" {
		m.ImageCacheSize = "10Gi"
	}
	budget, err := fsutil.ParseBudget(m.ImageCacheSize, contentDir)
	if err != nil {
		return fmt.Errorf("--image-cache-size: %w", err)
	}
	m.Registry = &images.Registry{Store: m.Content, Registries: m.RegistriesConfig, Log: m.Log}
	if err := m.Registry.Open(); err != nil {
		return err
	}
	m.Collector = &images.Collector{Store: m.Content, Budget: budget, Cluster: m.DB, Busy: m.Registry.Pulling,
		Interval: m.ImageGCInterval, Log: m.Log}
	m.Collector.Open()
	// Tarballs dropped in DATA_DIR/images are imported once each, in the
	// background: a large or bad one never holds the master's start.
	var actx context.Context
	actx, m.stopAirgap = context.WithCancel(context.Background())
	m.airgap = make(chan struct{})
	go func() {
		defer close(m.airgap)
		if imgs := m.Content.ImportDir(actx, filepath.Join(m.DataDir, "images"), m.Log); len(imgs) > 0 {
			m.Collector.Kick()
		}
	}()
	m.API = &api.Server{Addr: m.APIAddr, PKI: m.PKI, Store: m.DB, Tokens: m.DB, Bus: m.Bus, Log: m.Log,
		Version: version.Version, MQTTURL: m.agentMQTTURL, Auth: m.Auth, Bootstrap: m.Bootstrap, Metrics: m.metrics,
		JoinRate: m.JoinRate, Network: m.Network, Registry: m.Registry,
		Images: &images.Service{Store: m.Content, Collector: m.Collector}}
	if err := m.API.Open(); err != nil {
		return err
	}
	if err := m.Bootstrap.WriteAdminConf(m.API.Address()); err != nil {
		return err
	}
	if !m.NoMDNS {
		m.Advertiser = &discovery.Advertiser{APIPort: port(m.API.Address()), MQTTPort: port(m.mqttAddress()), CAHash: m.PKI.CAHash(), Log: m.Log}
		if err := m.Advertiser.Open(); err != nil {
			m.Log.Warn("mDNS advertisement failed; agents need --master", "err", err)
			m.Advertiser = nil
		}
	}
	m.Log.Info("edgemaster ready", "version", version.Version, "api", m.API.Address(), "mqtt", m.mqttAddress(),
		"data", m.DataDir, "join-token", filepath.Join(m.DataDir, "join-token"))
	return nil
}

// Close stops everything in reverse order. It is idempotent.
func (m *Main) Close() error {
	var errs []error
	if m.Advertiser != nil {
		m.Advertiser.Close()
	}
	if m.API != nil {
		errs = append(errs, m.API.Close())
	}
	if m.airgap != nil {
		m.stopAirgap() // an import cut short leaves nothing, and runs again at the next start
		<-m.airgap
	}
	if m.Collector != nil {
		m.Collector.Close()
	}
	if m.Registry != nil {
		errs = append(errs, m.Registry.Close())
		m.Registry = nil
	}
	if m.Controllers != nil {
		m.Controllers.Close()
	}
	if m.Bus != nil {
		errs = append(errs, m.Bus.Close())
	}
	if m.Broker != nil {
		errs = append(errs, m.Broker.Close())
	}
	if m.DB != nil {
		errs = append(errs, m.DB.Close())
	}
	return errors.Join(errs...)
}

// checks are edgemaster check's, on this machine with the master's flags.
func (m *Main) checks() []preflight.Check {
	cfg := preflight.MasterConfig{DataDir: m.DataDir, APIAddr: m.APIAddr, SQLite: sqlite.Usable}
	if m.MQTTURL == "" {
		cfg.MQTTAddr = m.MQTTAddr
	}
	return preflight.Master(preflight.Local(), cfg)
}

func port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	var n int
	fmt.Sscan(p, &n)
	return n
}

func (m *Main) mqttAddress() string {
	if m.Broker != nil {
		return m.Broker.Address()
	}
	return m.MQTTURL
}

// agentMQTTURL tells a joining agent where the broker is: the embedded one
// on the host the agent used to reach the API.
func (m *Main) agentMQTTURL(apiHost string) string {
	if m.Broker == nil {
		u := m.MQTTURL
		if i := strings.Index(u, "://"); i >= 0 {
			if j := strings.LastIndex(u[i+3:], "@"); j >= 0 {
				u = u[:i+3] + u[i+3+j+1:] // never hand out the master's own broker credentials
			}
		}
		return u
	}
	return "ssl://" + net.JoinHostPort(apiHost, fmt.Sprint(port(m.Broker.Address())))
}

func (m *Main) metrics() map[string]float64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	out := map[string]float64{
		"edge_store_writes_total": float64(m.DB.Writes()),
		"edge_store_revision":     float64(m.DB.Revision()),
		"go_goroutines":           float64(runtime.NumGoroutine()),
		"go_memstats_heap_inuse":  float64(ms.HeapInuse),
		"go_memstats_sys_bytes":   float64(ms.Sys),
		"process_resident_bytes":  float64(rss()),
	}
	if in, outb := m.Bus.Stats(); in >= 0 {
		out["edge_mqtt_bytes_received_total"] = float64(in)
		out["edge_mqtt_bytes_sent_total"] = float64(outb)
	}
	if m.Broker != nil {
		out["edge_mqtt_connections_refused_total"] = float64(m.Broker.Refused())
	}
	if m.Registry != nil {
		for k, v := range m.Registry.Stats() {
			out[k] = v
		}
	}
	for _, k := range []core.Kind{core.KindNode, core.KindPod, core.KindDeployment, core.KindDaemonSet, core.KindService} {
		if objs, err := m.DB.List(context.Background(), k, ""); err == nil {
			out["edge_objects{kind=\""+strings.ToLower(string(k))+"\"}"] = float64(len(objs))
		}
	}
	return out
}

func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, res int64
	fmt.Sscan(string(b), &size, &res)
	return res * int64(os.Getpagesize())
}
