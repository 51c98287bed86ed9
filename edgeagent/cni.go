package edgeagent

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"

	gocni "github.com/containerd/go-cni"
)

// CNI attaches pods through CNI plugins (containerd's go-cni). Without a
// config dir it uses a bridge network it writes itself: the node's pods on
// a bridge with host-local addresses and masquerading, plus portmap.
type CNI struct {
	cni gocni.CNI
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
				"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": true, "hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": podCIDR}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": ipamDir,
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// NewCNI loads the network from confDir, or the default bridge network
// (written under stateDir) when confDir is empty.
func NewCNI(binDir, confDir, stateDir, bridge, podCIDR string) (*CNI, error) {
	opts := []gocni.Opt{gocni.WithPluginDir([]string{binDir}), gocni.WithInterfacePrefix("eth")}
	loads := []gocni.Opt{gocni.WithLoNetwork}
	if confDir == "" {
		conf, err := DefaultNetwork(bridge, podCIDR, filepath.Join(stateDir, "ipam"))
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(stateDir, 0o700); err != nil {
			return nil, err
		}
		loads = append(loads, gocni.WithConfListBytes(conf))
	} else {
		opts = append(opts, gocni.WithPluginConfDir(confDir))
		loads = append(loads, gocni.WithDefaultConf)
	}
	c, err := gocni.New(opts...)
	if err != nil {
		return nil, err
	}
	if err := c.Load(loads...); err != nil {
		return nil, fmt.Errorf("load CNI config: %w", err)
	}
	return &CNI{cni: c}, nil
}

// Setup implements Network.
func (c *CNI) Setup(ctx context.Context, uid, name, namespace, netnsPath string) (string, error) {
	res, err := c.cni.Setup(ctx, uid, netnsPath, gocni.WithLabels(map[string]string{
		"K8S_POD_NAMESPACE": namespace, "K8S_POD_NAME": name, "K8S_POD_INFRA_CONTAINER_ID": uid, "IgnoreUnknown": "1",
	}))
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
	return c.cni.Remove(ctx, uid, netnsPath, gocni.WithLabels(map[string]string{
		"K8S_POD_NAMESPACE": namespace, "K8S_POD_NAME": name, "K8S_POD_INFRA_CONTAINER_ID": uid, "IgnoreUnknown": "1",
	}))
}
