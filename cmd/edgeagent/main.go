// Command edgeagent runs a worker node: it joins the master, keeps the pods
// it is given running through containerd, and reports over MQTT.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	ctrlog "github.com/containerd/log"
	"github.com/spf13/pflag"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/discovery"
	"github.com/edgeorch/edge/edgeagent"
	"github.com/edgeorch/edge/internal/daemon"
	"github.com/edgeorch/edge/internal/preflight"
	"github.com/edgeorch/edge/internal/version"
	"github.com/edgeorch/edge/mqtt"
)

func main() {
	if edgeagent.IsLogDriver(os.Args[1:]) { // run by containerd's shim for a container's output, without edge-logdriver
		os.Exit(edgeagent.RunLogDriver(os.Args[1:]))
	}
	daemon.Main("edgeagent", NewMain(), "shutting down; pods keep running")
}

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
	NodeIP     string
	NoProxy    bool
	Cleanup    bool
	Reserved   map[string]string
	VolumeDir  string
	Storage    string
	Debug      bool
	PprofAddr  string
	// PeerPort is where this node serves its image content to LAN peers,
	// and where it asks theirs (0: neither).
	PeerPort int
	// ImageCacheSize is --image-cache-size: the node's image cache budget.
	ImageCacheSize string
	// Check runs the preflight checks (edgeagent check) instead of the agent.
	Check  bool
	Stdout io.Writer // where check prints; default os.Stdout

	Log        *slog.Logger
	Agent      *edgeagent.Agent
	Membership *api.Membership
	Conn       *mqtt.Agent
	CNI        *edgeagent.CNI
	Services   *nodeServices
	NodeCert   *api.NodeCert
	PeerServer *edgeagent.PeerServer

	creds    atomic.Pointer[api.Credentials]
	stopCert context.CancelFunc
	certDone chan struct{}

	// Container log caps: --container-log-max-size, --container-log-max-files.
	LogMaxSize  string
	LogMaxFiles int
}

func NewMain() *Main { return &Main{} }

func (m *Main) ParseFlags(args []string) error {
	fs := pflag.NewFlagSet("edgeagent", pflag.ContinueOnError)
	host, _ := os.Hostname()
	fs.StringVar(&m.Master, "master", os.Getenv("EDGE_MASTER"), "master API URL (https://host:7443); found by mDNS when empty; also $EDGE_MASTER")
	fs.StringVar(&m.Token, "token", os.Getenv("EDGE_TOKEN"), "join token (K10<ca-hash>::<id>.<secret>); also $EDGE_TOKEN")
	fs.StringVar(&m.Name, "name", strings.ToLower(host), "node name")
	fs.StringVar(&m.DataDir, "data-dir", "/var/lib/edge/agent", "credentials, last desired state and pod logs")
	fs.StringVar(&m.Containerd, "containerd", "/run/containerd/containerd.sock", "containerd socket")
	fs.StringToStringVar(&m.Labels, "labels", nil, "extra node labels k=v,...; also $EDGE_LABELS")
	fs.DurationVar(&m.KeepAlive, "keepalive", 3*time.Second, "MQTT keepalive; a silent node is noticed after 1.5x")
	fs.StringSliceVar(&m.MDNSIfaces, "mdns-interface", nil, "interfaces to look for the master on (default all)")
	fs.StringVar(&m.CNIBinDir, "cni-bin-dir", "/usr/lib/cni", "CNI plugin binaries")
	fs.StringVar(&m.CNIConfDir, "cni-conf-dir", "", "CNI network configs (default: a bridge network the agent writes under --data-dir)")
	fs.StringVar(&m.PodCIDR, "pod-cidr", "", "pod addresses on this node (default: the subnet the master assigns)")
	fs.StringVar(&m.Bridge, "bridge", "edge0", "bridge of the default pod network")
	fs.StringVar(&m.NodeIP, "node-ip", "", "this node's LAN address (default: the first IPv4 address of an interface that is not a bridge)")
	fs.BoolVar(&m.NoProxy, "disable-proxy", false, "program no service rules, routes or cluster DNS on this node")
	fs.BoolVar(&m.Cleanup, "cleanup", false, "remove every iptables rule and chain, route and bridge the agent made, then exit (pods must be stopped first)")
	fs.StringToStringVar(&m.Reserved, "system-reserved", nil,
		"capacity kept from pods for the OS, containerd and the agent, e.g. cpu=100m,memory=256Mi (default cpu=100m, memory a quarter of RAM up to 256Mi)")
	fs.StringVar(&m.VolumeDir, "volume-dir", "", "where persistent volumes provisioned for claims live (default DATA_DIR/storage)")
	fs.StringVar(&m.Storage, "storage-capacity", "", "storage that claims on this node may reserve, e.g. 20Gi (default: the size of the volume directory's filesystem)")
	fs.StringVar(&m.LogMaxSize, "container-log-max-size", "10Mi", "rotate a container's log file at this size")
	fs.IntVar(&m.LogMaxFiles, "container-log-max-files", edgeagent.DefaultContainerLogMaxFiles, "log files kept per container, the live one included (at least 2)")
	fs.IntVar(&m.PeerPort, "peer-port", edgeagent.DefaultPeerPort, "serve this node's images to the cluster's other nodes (TLS, node certificates) on this port, and fetch from theirs when the master is unreachable; 0 disables")
	fs.StringVar(&m.ImageCacheSize, "image-cache-size", "0", "disk budget of the node's images (containerd content and unpacked layers): a size (10Gi, 500M) or a percentage of the disk of containerd's content store (25%); least recently used images no pod uses go first; 0: unbounded")
	fs.BoolVar(&m.Debug, "debug", false, "verbose logs")
	fs.StringVar(&m.PprofAddr, "pprof-addr", "", "serve Go profiles on this loopback address (127.0.0.1:6060), for debugging")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: edgeagent --token TOKEN [--master URL] [flags]\n"+
			"       edgeagent check [flags]   check this machine (cgroups, modules, iptables, containerd, CNI, clock, disk) and exit\n\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	// The release's systemd unit passes settings through /etc/edge/edge.env;
	// an empty EDGE_LABELS there means none (an empty --labels is an error).
	if v := os.Getenv("EDGE_LABELS"); v != "" && !fs.Changed("labels") {
		if err := fs.Set("labels", v); err != nil {
			return fmt.Errorf("$EDGE_LABELS: %v", err)
		}
	}
	if *showVersion {
		fmt.Println("edgeagent", version.Version)
		return pflag.ErrHelp
	}
	switch args := fs.Args(); {
	case len(args) == 1 && args[0] == "check":
		m.Check = true
		return nil // it only looks at the machine: no master, no token
	case len(args) > 0:
		return fmt.Errorf("unexpected arguments %q (the only command is check)", args)
	}
	if m.Cleanup {
		return nil
	}
	if m.Token == "" {
		return errors.New("--token is required: use the master's join-token file or 'edgectl token create'")
	}
	if _, err := api.ParseJoinToken(m.Token); err != nil {
		return fmt.Errorf("--token: %s", api.ErrorString(err))
	}
	for k, v := range m.Reserved {
		if k != "cpu" && k != "memory" {
			return fmt.Errorf("--system-reserved: %q is not a resource (cpu, memory)", k)
		}
		if _, err := core.Quantity(v).MilliValue(); err != nil {
			return fmt.Errorf("--system-reserved %s=%s: %v", k, v, err)
		}
	}
	if n, err := core.Quantity(m.LogMaxSize).Value(); err != nil || n < 1024 {
		return fmt.Errorf("--container-log-max-size %q: want a size of at least 1Ki, such as 10Mi", m.LogMaxSize)
	}
	if m.PeerPort < 0 || m.PeerPort > 65535 {
		return fmt.Errorf("--peer-port %d: want a port, or 0 to disable LAN peers", m.PeerPort)
	}
	if m.LogMaxFiles < 2 {
		return fmt.Errorf("--container-log-max-files %d: want at least 2 (the live file and one rotated)", m.LogMaxFiles)
	}
	n := &core.Node{TypeMeta: core.TypeMeta{Kind: core.KindNode}, Metadata: core.ObjectMeta{Name: m.Name, Labels: m.Labels}}
	if err := core.Validate(n); err != nil {
		return fmt.Errorf("--name/--labels: %s", api.ErrorString(err))
	}
	return nil
}

// Run joins (or reuses saved credentials) and starts the agent. The agent
// starts running its saved pods before the master answers.
func (m *Main) Run(ctx context.Context) error {
	if m.Log == nil {
		m.Log = daemon.Logger(m.Debug, "node", m.Name)
	}
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
	if m.Cleanup {
		if err := cleanup(m.Bridge, m.DataDir); err != nil {
			return err
		}
		m.Log.Info("removed the agent's rules, routes and bridge")
		return daemon.ErrDone
	}
	if !m.Debug {
		ctrlog.SetLevel("warn") // containerd's client logs every failed registry request at info
	}
	if err := os.MkdirAll(m.DataDir, 0o700); err != nil {
		return err
	}
	if err := daemon.ServeProfiles(ctx, m.PprofAddr, m.Log); err != nil {
		return err
	}
	m.Agent = &edgeagent.Agent{Name: m.Name, DataDir: m.DataDir, Containerd: m.Containerd, Labels: m.Labels,
		NodeIP: m.NodeIP, Version: version.Version, Log: m.Log, VolumeDir: m.VolumeDir,
		Preflight: func(ctx context.Context) []preflight.Result { return preflight.Run(ctx, m.checks()) }}
	if m.Storage != "" {
		n, err := core.Quantity(m.Storage).Value()
		if err != nil || n <= 0 {
			return fmt.Errorf("--storage-capacity %q: want a size such as 20Gi", m.Storage)
		}
		m.Agent.StorageCapacity = n
	}
	if m.Reserved != nil {
		m.Agent.SystemReserved = core.ResourceList{}
		for k, v := range m.Reserved {
			m.Agent.SystemReserved[k] = core.Quantity(v)
		}
	}
	m.Agent.ContainerLogMaxSize, _ = core.Quantity(m.LogMaxSize).Value() // checked by ParseFlags
	m.Agent.ContainerLogMaxFiles = m.LogMaxFiles
	if m.ImageCacheSize != "" && m.ImageCacheSize != "0" {
		n, err := edgeagent.ImageCacheBudget(ctx, m.ImageCacheSize, m.Containerd, m.DataDir)
		if err != nil {
			return fmt.Errorf("--image-cache-size: %w", err)
		}
		m.Agent.ImageCacheSize = n
	}
	if drv, small, err := edgeagent.FindLogDriver(); err != nil {
		m.Log.Warn("container logs are not rotated: cannot find the agent's executable", "err", err)
	} else {
		if !small {
			m.Log.Info("edge-logdriver is not installed beside edgeagent: the agent's own binary writes container logs, with more memory per container")
		}
		m.Agent.LogDriver = drv
	}
	if cni, err := m.network(); err != nil {
		m.Log.Warn("pod networking disabled: pods get a loopback-only namespace", "err", err)
	} else {
		m.CNI = cni
		m.Agent.Network = cni
		if !m.NoProxy {
			m.Services = newNodeServices(m.Name, m.DataDir, m.Agent.HostIP, cni, m.Log)
			m.Agent.Services = m.Services
			if m.CNIConfDir == "" {
				// Cluster DNS listens on the default network's bridge; a
				// network of the user's keeps the node's resolv.conf.
				m.Agent.ResolvConf = m.Services.resolvConf
			}
		}
	}
	// The connection exists (unopened) before the agent starts, so the
	// agent's reports have somewhere to go from the first moment; they fail
	// as "not connected" until it is open.
	m.Conn = &mqtt.Agent{Node: m.Name, KeepAlive: m.KeepAlive, Log: m.Log,
		OnDesired: m.Agent.SetDesired, OnNetwork: m.Agent.SetNetwork, OnConnect: m.Agent.ForceReport, Logs: m.Agent.Logs,
		Rejoin: func(ctx context.Context) (string, string, error) {
			c, err := m.Membership.Rejoin(ctx)
			if err != nil {
				return "", "", err
			}
			m.setMirror(c) // a new credential
			return c.MQTTURL, c.Password, nil
		}}
	m.Agent.Reporter = m.Conn
	m.Agent.Online = m.Conn.Connected
	// The agent runs its saved pods before the master answers.
	if err := m.Agent.Open(); err != nil {
		return err
	}
	m.Membership = &api.Membership{Token: m.Token, Master: m.Master, Node: m.Name, DataDir: m.DataDir, Log: m.Log, Version: version.Version,
		Discover: func(ctx context.Context, caHash string) (string, error) {
			found, err := discovery.Find(ctx, caHash, m.MDNSIfaces, m.Log)
			if err != nil {
				return "", err
			}
			return found.URL(), nil
		}}
	if m.PeerPort > 0 {
		m.NodeCert = &api.NodeCert{DataDir: m.DataDir, Credentials: m.creds.Load, Log: m.Log,
			IPs: func() []net.IP {
				if ip := net.ParseIP(m.Agent.HostIP()); ip != nil {
					return []net.IP{ip}
				}
				return nil
			}}
		if err := m.NodeCert.Load(); err != nil {
			m.Log.Warn("ignoring the saved node certificate; asking the master for a new one", "err", err)
		}
	}
	creds, err := m.Membership.Credentials(ctx)
	if err != nil {
		return err
	}
	tlsConfig, err := api.CATLS([]byte(creds.CACert))
	if err != nil {
		return err
	}
	m.setMirror(creds)
	if m.PeerPort > 0 {
		m.startPeers(ctx, creds)
	}
	m.Conn.URL, m.Conn.Password = creds.MQTTURL, creds.Password
	if strings.HasPrefix(creds.MQTTURL, "ssl://") || strings.HasPrefix(creds.MQTTURL, "tls://") {
		m.Conn.TLS = tlsConfig
	}
	return m.Conn.Open()
}

// setMirror makes the agent pull every image through the master's
// registry, with the node's credential, trusting the cluster CA only.
func (m *Main) setMirror(c *api.Credentials) {
	u := c.API
	if u == "" {
		u = c.Master
	}
	pu, err := url.Parse(u)
	if err != nil || pu.Host == "" {
		m.Log.Warn("the master's API URL is unknown: images are pulled from their registries directly", "url", u)
		return
	}
	tlsConfig, err := api.CATLS([]byte(c.CACert))
	if err != nil {
		m.Log.Warn("the cluster CA is unreadable: images are pulled from their registries directly", "err", err)
		return
	}
	m.creds.Store(c)
	mirror := &edgeagent.Mirror{Host: pu.Host, TLS: tlsConfig, Username: c.Node, Password: c.Password}
	if m.NodeCert != nil {
		if peerTLS, err := api.PeerClientTLS([]byte(c.CACert), m.NodeCert); err == nil {
			port := m.PeerPort
			mirror.Peers = func() []edgeagent.Peer { return m.Agent.Peers(port) }
			mirror.PeerTLS = peerTLS
		}
	}
	m.Agent.SetMirror(mirror)
}

// startPeers keeps the node certificate current and serves the node's
// image content to its LAN peers. A port that is taken only costs the
// peers this node's content: the agent runs on.
func (m *Main) startPeers(ctx context.Context, c *api.Credentials) {
	ctx, m.stopCert = context.WithCancel(context.WithoutCancel(ctx))
	m.certDone = make(chan struct{})
	go func() {
		defer close(m.certDone)
		m.NodeCert.Run(ctx)
	}()
	serverTLS, err := api.PeerServerTLS([]byte(c.CACert), m.NodeCert)
	if err != nil {
		m.Log.Warn("not serving LAN peers", "err", err)
		return
	}
	store, resolve, err := m.Agent.PeerStore()
	if err != nil {
		m.Log.Warn("not serving LAN peers", "err", err)
		return
	}
	ps := &edgeagent.PeerServer{Addr: fmt.Sprintf(":%d", m.PeerPort), TLS: serverTLS, Content: store, Resolve: resolve,
		Member: m.Agent.ClusterMember, Log: m.Log}
	if err := ps.Open(); err != nil {
		m.Log.Warn("not serving LAN peers: the peer port is taken (--peer-port)", "err", err)
		return
	}
	m.PeerServer = ps
}

// checks are edgeagent check's, on this machine with the agent's flags.
func (m *Main) checks() []preflight.Check {
	return preflight.Agent(preflight.Local(), preflight.AgentConfig{DataDir: m.DataDir, Containerd: m.Containerd,
		CNIBinDir: m.CNIBinDir, CgroupParent: edgeagent.CgroupParent(m.Name),
		RuntimeVersion:   func(ctx context.Context) (string, error) { return edgeagent.ContainerdVersion(ctx, m.Containerd) },
		ContainerdRootOf: func(ctx context.Context) (string, error) { return edgeagent.ContainerdContentRoot(ctx, m.Containerd) }})
}

func (m *Main) network() (*edgeagent.CNI, error) {
	if _, err := os.Stat(filepath.Join(m.CNIBinDir, "bridge")); err != nil {
		return nil, fmt.Errorf("no CNI plugins in %s (apt-get install containernetworking-plugins)", m.CNIBinDir)
	}
	return edgeagent.NewCNI(m.CNIBinDir, m.CNIConfDir, filepath.Join(m.DataDir, "cni"), m.Bridge, m.PodCIDR)
}

// Close stops the agent; containers keep running.
func (m *Main) Close() error {
	if m.PeerServer != nil {
		m.PeerServer.Close()
	}
	if m.stopCert != nil {
		m.stopCert()
		<-m.certDone
	}
	if m.Conn != nil {
		m.Conn.Close()
	}
	var err error
	if m.Agent != nil {
		err = m.Agent.Close()
	}
	if m.Services != nil {
		m.Services.Close() // rules and routes stay: traffic keeps flowing
	}
	return err
}
