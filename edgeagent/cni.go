package edgeagent

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	gocni "github.com/containerd/go-cni"
	"github.com/coreos/go-iptables/iptables"

	"github.com/edgeorch/edge/core"
)

// CNI attaches pods through CNI plugins (containerd's go-cni). Without a
// config dir it uses a bridge network it writes itself, on the pod subnet
// the master gave the node: the node's pods on a bridge with host-local
// addresses and portmap for hostPorts. Masquerading traffic that leaves the
// cluster is the service proxy's job (one rule for the cluster CIDR, as
// flannel does) instead of NAT chains per pod, which cost every pod start
// several serialised iptables calls.
type CNI struct {
	binDir, confDir, stateDir, bridge string
	fixed                             string // --pod-cidr: overrides the master's

	mu      sync.RWMutex
	cni     gocni.CNI // nil until the network is configured
	podCIDR string
}

// DefaultNetwork returns the conflist of the agent's default pod network.
func DefaultNetwork(bridge, podCIDR, ipamDir string) ([]byte, error) {
	_, subnet, err := net.ParseCIDR(podCIDR)
	if err != nil || subnet.IP.To4() == nil {
		return nil, fmt.Errorf("pod subnet %q: not an IPv4 prefix", podCIDR)
	}
	gw := append(net.IP(nil), subnet.IP.To4()...)
	gw[3]++ // the bridge's address, where the node's cluster DNS listens
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "edge",
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false, "hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": podCIDR}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": ipamDir,
				},
			},
			// A pod's hostPort 53 (pihole) must not capture the pods'
			// own DNS on the bridge address.
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": true,
				"conditionsV4": []string{"!", "-d", gw.String() + "/32"}},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// NewCNI loads the network from confDir, or prepares the default bridge
// network (written under stateDir) when confDir is empty: on podCIDR if
// given, else on the subnet SetPodCIDR brings. Loopback is brought up by
// the agent when it creates a pod's namespace, so no loopback plugin runs.
func NewCNI(binDir, confDir, stateDir, bridge, podCIDR string) (*CNI, error) {
	c := &CNI{binDir: binDir, confDir: confDir, stateDir: stateDir, bridge: bridge, fixed: podCIDR}
	switch {
	case confDir != "":
		return c, c.load(gocni.WithDefaultConf)
	case podCIDR != "":
		return c, c.configure(podCIDR)
	}
	return c, nil
}

func (c *CNI) load(conf gocni.Opt) error {
	l, err := gocni.New(gocni.WithPluginDir([]string{c.binDir}), gocni.WithInterfacePrefix("eth"),
		gocni.WithMinNetworkCount(1), gocni.WithPluginConfDir(c.confDir))
	if err != nil {
		return err
	}
	if err := l.Load(conf); err != nil {
		return fmt.Errorf("load CNI config: %w", err)
	}
	c.mu.Lock()
	c.cni = l
	c.mu.Unlock()
	return nil
}

func (c *CNI) configure(podCIDR string) error {
	conf, err := DefaultNetwork(c.bridge, podCIDR, filepath.Join(c.stateDir, "ipam"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.stateDir, 0o700); err != nil {
		return err
	}
	if err := c.load(gocni.WithConfListBytes(conf)); err != nil {
		return err
	}
	c.mu.Lock()
	c.podCIDR = podCIDR
	c.mu.Unlock()
	return nil
}

// SetPodCIDR implements Network. A --pod-cidr or a CNI config dir of the
// user's wins over the master's subnet.
func (c *CNI) SetPodCIDR(cidr string) error {
	if c.confDir != "" || c.fixed != "" {
		return nil
	}
	c.mu.RLock()
	same := c.podCIDR == cidr
	c.mu.RUnlock()
	if same {
		return nil
	}
	return c.configure(cidr)
}

// PodCIDR returns the subnet pods get addresses from ("" while unknown or
// when a CNI config dir decides).
func (c *CNI) PodCIDR() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.podCIDR
}

func (c *CNI) plugin() (gocni.CNI, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.cni == nil {
		return nil, fmt.Errorf("no pod subnet yet: waiting for the master to assign this node one")
	}
	return c.cni, nil
}

func cniLabels(uid, name, namespace string) gocni.NamespaceOpts {
	return gocni.WithLabels(map[string]string{
		"K8S_POD_NAMESPACE": namespace, "K8S_POD_NAME": name, "K8S_POD_INFRA_CONTAINER_ID": uid, "IgnoreUnknown": "1",
	})
}

// Setup implements Network.
func (c *CNI) Setup(ctx context.Context, uid, name, namespace, netnsPath string, ports []core.ContainerPort) (string, error) {
	l, err := c.plugin()
	if err != nil {
		return "", err
	}
	opts := []gocni.NamespaceOpts{cniLabels(uid, name, namespace)}
	if len(ports) > 0 {
		var maps []gocni.PortMapping
		for _, p := range ports {
			maps = append(maps, gocni.PortMapping{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: p.Protocol})
		}
		opts = append(opts, gocni.WithCapabilityPortMap(maps))
	}
	res, err := l.Setup(ctx, uid, netnsPath, opts...)
	if err != nil {
		return "", err
	}
	for ifname, cfg := range res.Interfaces {
		if ifname == "lo" {
			continue
		}
		for _, ip := range cfg.IPConfigs {
			if ip.IP.To4() != nil {
				return ip.IP.String(), nil
			}
		}
	}
	return "", fmt.Errorf("CNI gave the pod no IPv4 address")
}

// Teardown implements Network.
func (c *CNI) Teardown(ctx context.Context, uid, name, namespace, netnsPath string) error {
	l, err := c.plugin()
	if err != nil {
		return nil // never configured: nothing was attached
	}
	return l.Remove(ctx, uid, netnsPath, cniLabels(uid, name, namespace))
}

// CleanupPortmap removes the chains CNI's portmap plugin leaves in the nat
// table after its last pod is gone (CNI-HOSTPORT-DNAT, -SETMARK, -MASQ and
// the jumps to them), for an uninstall. Anything still mapped (another
// runtime's pods, or ours not yet stopped) keeps them all.
func CleanupPortmap() error {
	ipt, err := iptables.New()
	if err != nil {
		return err
	}
	if ok, err := ipt.ChainExists("nat", "CNI-HOSTPORT-DNAT"); err != nil || !ok {
		return err
	}
	rules, err := ipt.List("nat", "CNI-HOSTPORT-DNAT")
	if err != nil {
		return err
	}
	if len(rules) > 1 { // the first is the chain's own "-N"
		return fmt.Errorf("CNI-HOSTPORT-DNAT still maps %d host ports: stop the pods first", len(rules)-1)
	}
	for _, j := range []struct{ chain, target string }{
		{"PREROUTING", "CNI-HOSTPORT-DNAT"}, {"OUTPUT", "CNI-HOSTPORT-DNAT"}, {"POSTROUTING", "CNI-HOSTPORT-MASQ"},
	} {
		rules, err := ipt.List("nat", j.chain)
		if err != nil {
			return err
		}
		for _, r := range rules {
			if !strings.Contains(r, "-j "+j.target) || !strings.HasPrefix(r, "-A ") {
				continue
			}
			spec := strings.Fields(strings.TrimPrefix(r, "-A "+j.chain+" "))
			if err := ipt.Delete("nat", j.chain, unquote(spec)...); err != nil {
				return fmt.Errorf("delete %s: %w", r, err)
			}
		}
	}
	for _, c := range []string{"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ"} {
		if ok, _ := ipt.ChainExists("nat", c); ok {
			if err := ipt.ClearAndDeleteChain("nat", c); err != nil {
				return fmt.Errorf("delete chain %s: %w", c, err)
			}
		}
	}
	return nil
}

// unquote undoes iptables -S quoting of single words ("--comment "x"").
func unquote(fields []string) []string {
	out := make([]string, 0, len(fields))
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		if strings.HasPrefix(f, `"`) {
			for !strings.HasSuffix(f, `"`) || len(f) == 1 {
				if i+1 >= len(fields) {
					break
				}
				i++
				f += " " + fields[i]
			}
			f = strings.Trim(f, `"`)
		}
		out = append(out, f)
	}
	return out
}
