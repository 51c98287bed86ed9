package edgeagent

import (
	"strings"
	"testing"

	"github.com/edgeorch/edge/core"
)

func TestPodResolvConf(t *testing.T) {
	a := &Agent{ResolvConf: func(ns string) []byte {
		return []byte("nameserver 10.42.0.1\nsearch " + ns + ".svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n")
	}}
	two := "2"
	cfg := &core.PodDNSConfig{Nameservers: []string{"1.1.1.1", "10.42.0.1"}, Searches: []string{"home.lan"},
		Options: []core.PodDNSConfigOption{{Name: "ndots", Value: &two}, {Name: "edns0"}}}
	pod := func(policy string, hostNet bool, c *core.PodDNSConfig) *core.Pod {
		return &core.Pod{Metadata: core.ObjectMeta{Namespace: "iot"}, Spec: core.PodSpec{DNSPolicy: policy, HostNetwork: hostNet, DNSConfig: c}}
	}
	for _, tt := range []struct {
		name string
		pod  *core.Pod
		own  bool
		want string
	}{
		{"cluster first", pod("", false, nil), true, "nameserver 10.42.0.1\nsearch iot.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"},
		{"cluster first with dnsConfig", pod("ClusterFirst", false, cfg), true,
			"nameserver 10.42.0.1\nnameserver 1.1.1.1\nsearch iot.svc.cluster.local svc.cluster.local cluster.local home.lan\noptions ndots:2 edns0\n"},
		{"hostNetwork shares the node's", pod("ClusterFirst", true, nil), false, ""},
		{"hostNetwork asking for the cluster's", pod("ClusterFirstWithHostNet", true, nil), true, "nameserver 10.42.0.1\n"},
		{"None: dnsConfig only", pod("None", false, &core.PodDNSConfig{Nameservers: []string{"192.168.1.1"}, Searches: []string{"lan"}}), true,
			"nameserver 192.168.1.1\nsearch lan\n"},
		{"Default without dnsConfig", pod("Default", false, nil), false, ""},
	} {
		got, own := a.podResolvConf(tt.pod)
		if own != tt.own || !strings.HasPrefix(string(got), tt.want) {
			t.Errorf("%s: own %v\n%s\nwant prefix\n%s", tt.name, own, got, tt.want)
		}
	}
	four := mergeResolvConf([]byte("nameserver 1.1.1.1\nnameserver 8.8.8.8\n# comment\nsearch a\n"), &core.PodDNSConfig{Nameservers: []string{"9.9.9.9", "4.4.4.4"}})
	if strings.Count(string(four), "nameserver") != 3 || strings.Contains(string(four), "4.4.4.4") {
		t.Errorf("more than 3 nameservers:\n%s", four)
	}
}
