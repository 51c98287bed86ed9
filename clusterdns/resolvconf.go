package clusterdns

import (
	"bytes"
	"fmt"
	"net"
	"strings"

	"github.com/miekg/dns"
)

// maxSearch is the kubelet's cap on search domains (glibc since 2.26
// takes any number; older ones and musl cut the line short anyway).
const maxSearch = 32

// ResolvConf returns the resolv.conf of a pod in namespace ns using the
// cluster DNS at nameserverIP, as the kubelet writes it for dnsPolicy
// ClusterFirst: the namespace's, the services' and the cluster's search
// domains, then the node's own (hostSearch), without duplicates, and
// ndots:5 so that "web" and "web.other" try the cluster first.
func ResolvConf(nameserverIP, namespace, domain string, hostSearch []string) []byte {
	domain = strings.TrimSuffix(domain, ".")
	if domain == "" {
		domain = strings.TrimSuffix(defaultDomain, ".")
	}
	if namespace == "" {
		namespace = "default"
	}
	var search []string
	seen := map[string]bool{}
	for _, d := range append([]string{namespace + ".svc." + domain, "svc." + domain, domain}, hostSearch...) {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		if d == "" || seen[d] || len(search) == maxSearch {
			continue
		}
		seen[d] = true
		search = append(search, d)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "nameserver %s\n", nameserverIP)
	fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	b.WriteString("options ndots:5\n")
	return b.Bytes()
}

// HostResolvConf parses the node's resolv.conf at path: its nameservers
// as host:port (ready for Server.Upstreams) and its search domains
// without trailing dots.
func HostResolvConf(path string) (servers, search []string, err error) {
	c, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("node resolv.conf: %w", err)
	}
	for _, s := range c.Servers {
		servers = append(servers, net.JoinHostPort(s, c.Port))
	}
	for _, d := range c.Search {
		if d = strings.TrimSuffix(d, "."); d != "" {
			search = append(search, d)
		}
	}
	return servers, search, nil
}
