// Package discovery advertises a master on the LAN with mDNS
// (_edgemaster._tcp) and finds masters from an agent or a gateway. The TXT
// record carries the CA fingerprint, so an agent can pick the master its
// join token pins and ignore any other advertiser. It never trusts what it
// hears: the pin is checked again on the TLS connection.
package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/grandcat/zeroconf"
)

// Service is the mDNS service type masters advertise.
const Service = "_edgemaster._tcp"

// Advertiser announces one master.
type Advertiser struct {
	Instance   string // default: hostname
	APIPort    int
	MQTTPort   int
	CAHash     string
	Interfaces []string // default: all multicast-capable
	Log        *slog.Logger

	server *zeroconf.Server
}

// Open starts answering mDNS queries.
func (a *Advertiser) Open() error {
	if a.Instance == "" {
		// The CA hash keeps two clusters' masters apart even on hosts with
		// the same name (cloned SD cards often share one).
		host, _ := os.Hostname()
		a.Instance = host + "-" + a.CAHash[:min(8, len(a.CAHash))]
	}
	ifaces, err := interfaces(a.Interfaces)
	if err != nil {
		return err
	}
	txt := []string{"api=" + strconv.Itoa(a.APIPort), "mqtt=" + strconv.Itoa(a.MQTTPort), "ca=" + a.CAHash, "v=1"}
	a.server, err = zeroconf.Register(a.Instance, Service, "local.", a.APIPort, txt, ifaces)
	if err != nil {
		return fmt.Errorf("mdns: %w", err)
	}
	return nil
}

// Close withdraws the advertisement; idempotent.
func (a *Advertiser) Close() {
	if a.server != nil {
		a.server.Shutdown()
		a.server = nil
	}
}

func interfaces(names []string) ([]net.Interface, error) {
	if len(names) == 0 {
		return nil, nil
	}
	var out []net.Interface
	for _, n := range names {
		ifc, err := net.InterfaceByName(n)
		if err != nil {
			return nil, fmt.Errorf("mdns interface %q: %w", n, err)
		}
		out = append(out, *ifc)
	}
	return out, nil
}

// Master is a master seen on the LAN.
type Master struct {
	Instance string   `json:"instance"`
	Host     string   `json:"host"`
	Addrs    []string `json:"addresses"`
	APIPort  int      `json:"apiPort"`
	MQTTPort int      `json:"mqttPort"`
	CAHash   string   `json:"caHash"`
}

// URL returns the master's API URL on its first address.
func (m Master) URL() string {
	if len(m.Addrs) == 0 {
		return ""
	}
	return "https://" + net.JoinHostPort(m.Addrs[0], strconv.Itoa(m.APIPort))
}

// Browse listens for masters for the given time.
func Browse(ctx context.Context, wait time.Duration, ifaceNames []string) ([]Master, error) {
	ifaces, err := interfaces(ifaceNames)
	if err != nil {
		return nil, err
	}
	var opts []zeroconf.ClientOption
	if len(ifaces) > 0 {
		opts = append(opts, zeroconf.SelectIfaces(ifaces))
	}
	r, err := zeroconf.NewResolver(opts...)
	if err != nil {
		return nil, fmt.Errorf("mdns: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	entries := make(chan *zeroconf.ServiceEntry, 16)
	if err := r.Browse(ctx, Service, "local.", entries); err != nil {
		return nil, fmt.Errorf("mdns browse: %w", err)
	}
	seen := map[string]Master{}
	for {
		select {
		case <-ctx.Done():
			out := make([]Master, 0, len(seen))
			for _, m := range seen {
				out = append(out, m)
			}
			sort.Slice(out, func(i, j int) bool { return out[i].Instance < out[j].Instance })
			return out, nil
		case e, ok := <-entries:
			if !ok {
				entries = nil
				continue
			}
			m := Master{Instance: e.Instance, Host: e.HostName, APIPort: e.Port}
			for _, t := range e.Text {
				k, v, _ := strings.Cut(t, "=")
				switch k {
				case "api":
					m.APIPort, _ = strconv.Atoi(v)
				case "mqtt":
					m.MQTTPort, _ = strconv.Atoi(v)
				case "ca":
					m.CAHash = v
				}
			}
			for _, ip := range e.AddrIPv4 {
				m.Addrs = append(m.Addrs, ip.String())
			}
			for _, ip := range e.AddrIPv6 {
				m.Addrs = append(m.Addrs, ip.String())
			}
			seen[e.Instance+"|"+m.CAHash] = m
		}
	}
}

// Find waits for a master whose CA hash is caHash and returns it. Masters
// with another CA are logged and skipped.
func Find(ctx context.Context, caHash string, ifaceNames []string, log *slog.Logger) (Master, error) {
	for {
		ms, err := Browse(ctx, 2*time.Second, ifaceNames)
		if err != nil {
			return Master{}, err
		}
		for _, m := range ms {
			if strings.EqualFold(m.CAHash, caHash) && len(m.Addrs) > 0 {
				return m, nil
			}
			if log != nil {
				log.Warn("ignoring a master whose CA does not match the join token", "instance", m.Instance, "addresses", m.Addrs)
			}
		}
		if ctx.Err() != nil {
			return Master{}, fmt.Errorf("no master with the token's CA found by mDNS (%s); pass --master", Service)
		}
	}
}
