package edgeagent

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"

	gocni "github.com/containerd/go-cni"
	"github.com/coreos/go-iptables/iptables"
)

// CNI attaches pods through CNI plugins (containerd's go-cni). Without a
// config dir it uses a bridge network it writes itself: the node's pods on
// a bridge with host-local addresses, and one masquerade rule for the whole
// pod range (as flannel does) instead of NAT chains per pod, which cost
// every pod start several serialised iptables calls.
type CNI struct {
	cni     gocni.CNI
	podCIDR string // set when the agent owns the masquerade rule
}

// DefaultNetwork returns the conflist of the agent's default pod network.
func DefaultNetwork(bridge, podCIDR, ipamDir string) ([]byte, error) {
	if _, _, err := net.ParseCIDR(podCIDR); err != nil {
		return nil, fmt.Errorf("--pod-cidr %q: %w", podCIDR, err)
	}
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
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// masqueradeRule is the rule that lets pods reach beyond the node.
func masqueradeRule(podCIDR string) []string {
	return []string{"-s", podCIDR, "!", "-d", podCIDR, "-m", "comment", "--comment", "edge pod network", "-j", "MASQUERADE"}
}

// NewCNI loads the network from confDir, or the default bridge network
// (written under stateDir) when confDir is empty. Loopback is brought up by
// the agent when it creates a pod's namespace, so no loopback plugin runs.
func NewCNI(binDir, confDir, stateDir, bridge, podCIDR string) (*CNI, error) {
	opts := []gocni.Opt{gocni.WithPluginDir([]string{binDir}), gocni.WithInterfacePrefix("eth"), gocni.WithMinNetworkCount(1)}
	var loads []gocni.Opt
	c := &CNI{}
	if confDir == "" {
		conf, err := DefaultNetwork(bridge, podCIDR, filepath.Join(stateDir, "ipam"))
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(stateDir, 0o700); err != nil {
			return nil, err
		}
		loads = append(loads, gocni.WithConfListBytes(conf))
		ipt, err := iptables.New()
		if err != nil {
			return nil, fmt.Errorf("iptables: %w", err)
		}
		if err := ipt.AppendUnique("nat", "POSTROUTING", masqueradeRule(podCIDR)...); err != nil {
			return nil, fmt.Errorf("pod masquerade rule: %w", err)
		}
		c.podCIDR = podCIDR
	} else {
		opts = append(opts, gocni.WithPluginConfDir(confDir))
		loads = append(loads, gocni.WithDefaultConf)
	}
	l, err := gocni.New(opts...)
	if err != nil {
		return nil, err
	}
	if err := l.Load(loads...); err != nil {
		return nil, fmt.Errorf("load CNI config: %w", err)
	}
	c.cni = l
	return c, nil
}

// RemoveMasquerade deletes the default network's masquerade rule (for
// uninstalls and tests; a running node keeps it).
func RemoveMasquerade(podCIDR string) error {
	ipt, err := iptables.New()
	if err != nil {
		return err
	}
	if ok, err := ipt.Exists("nat", "POSTROUTING", masqueradeRule(podCIDR)...); err != nil || !ok {
		return err
	}
	return ipt.Delete("nat", "POSTROUTING", masqueradeRule(podCIDR)...)
}

func cniLabels(uid, name, namespace string) gocni.NamespaceOpts {
	return gocni.WithLabels(map[string]string{
		"K8S_POD_NAMESPACE": namespace, "K8S_POD_NAME": name, "K8S_POD_INFRA_CONTAINER_ID": uid, "IgnoreUnknown": "1",
	})
}

// Setup implements Network.
func (c *CNI) Setup(ctx context.Context, uid, name, namespace, netnsPath string) (string, error) {
	res, err := c.cni.Setup(ctx, uid, netnsPath, cniLabels(uid, name, namespace))
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
	return c.cni.Remove(ctx, uid, netnsPath, cniLabels(uid, name, namespace))
}
