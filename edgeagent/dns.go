package edgeagent

import (
	"bytes"
	"os"
	"slices"
	"strings"

	"github.com/edgeorch/edge/core"
)

// podResolvConf returns the resolv.conf of a pod, as the kubelet composes
// it: the cluster DNS for ClusterFirst (and ClusterFirstWithHostNet), the
// node's for Default (and hostNetwork), nothing for None; then the pod's
// dnsConfig added (nameservers and search domains appended, options
// overriding by name). own is false when the pod simply shares the
// node's /etc/resolv.conf.
func (a *Agent) podResolvConf(pod *core.Pod) (content []byte, own bool) {
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = "ClusterFirst"
	}
	var base []byte
	switch {
	case policy == "None":
	case a.ResolvConf != nil && ((policy == "ClusterFirst" && !pod.Spec.HostNetwork) || policy == "ClusterFirstWithHostNet"):
		base = a.ResolvConf(pod.Metadata.Namespace)
	default:
		if pod.Spec.DNSConfig == nil {
			return nil, false
		}
		base, _ = os.ReadFile("/etc/resolv.conf")
	}
	return mergeResolvConf(base, pod.Spec.DNSConfig), true
}

// mergeResolvConf adds cfg to the resolv.conf base: at most 3 nameservers
// and 32 search domains (the resolver reads no more), without duplicates.
func mergeResolvConf(base []byte, cfg *core.PodDNSConfig) []byte {
	var servers, search []string
	var options []string // name or name:value, in order
	setOption := func(opt string) {
		name, _, _ := strings.Cut(opt, ":")
		for i, o := range options {
			if n, _, _ := strings.Cut(o, ":"); n == name {
				options[i] = opt
				return
			}
		}
		options = append(options, opt)
	}
	for _, line := range strings.Split(string(base), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			servers = append(servers, f[1])
		case "search", "domain":
			search = append(search, f[1:]...)
		case "options":
			for _, o := range f[1:] {
				setOption(o)
			}
		}
	}
	if cfg != nil {
		servers = append(servers, cfg.Nameservers...)
		search = append(search, cfg.Searches...)
		for _, o := range cfg.Options {
			if o.Value != nil {
				setOption(o.Name + ":" + *o.Value)
			} else {
				setOption(o.Name)
			}
		}
	}
	var b bytes.Buffer
	for _, s := range dedupe(servers, 3) {
		b.WriteString("nameserver " + s + "\n")
	}
	if s := dedupe(search, 32); len(s) > 0 {
		b.WriteString("search " + strings.Join(s, " ") + "\n")
	}
	if len(options) > 0 {
		b.WriteString("options " + strings.Join(options, " ") + "\n")
	}
	return b.Bytes()
}

func dedupe(list []string, limit int) []string {
	var out []string
	for _, s := range list {
		if !slices.Contains(out, s) && len(out) < limit {
			out = append(out, s)
		}
	}
	return out
}
