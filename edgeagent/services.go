package edgeagent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/internal/backoff"
)

// The cluster's network state on this node: the agent keeps the last one
// the master published (on disk too, so services keep routing and names
// keep resolving after an agent restart while the master is away) and
// hands it, with its own pods' readiness, to the node's service proxy.

// ServiceProxy programs the cluster's network state on this node: routes
// to other nodes' pods, the service proxy and the DNS server. local says
// whether one of this node's pods is ready as the agent sees it now; it
// overrides the published endpoint readiness, so a local pod that crashes
// leaves its node's endpoints at once, master or not.
type ServiceProxy interface {
	Sync(ns *core.NetworkState, local func(podUID string) (ready, known bool)) error
}

func (a *Agent) networkPath() string { return filepath.Join(a.DataDir, "network.json") }

// loadNetwork reads the saved network state, if any.
func (a *Agent) loadNetwork() {
	b, err := os.ReadFile(a.networkPath())
	if err != nil {
		return
	}
	var ns core.NetworkState
	err = json.Unmarshal(b, &ns)
	if err == nil {
		err = ns.Validate()
	}
	if err != nil {
		a.Log.Error("ignoring unreadable saved network state", "file", a.networkPath(), "err", err)
		return
	}
	a.network = &ns
}

// SetNetwork hands the agent a new cluster network state (from the
// master). It does not block.
func (a *Agent) SetNetwork(ns *core.NetworkState) {
	if saveLatest(a, &a.network, ns, func(n *core.NetworkState) string { return n.Hash }, func(ns *core.NetworkState) error { return saveJSON(a.networkPath(), ns) }, "the network state") {
		a.kickNetwork()
	}
}

func (a *Agent) kickNetwork() {
	select {
	case a.netDirty <- struct{}{}:
	default:
	}
}

// networkState returns the last known network state (nil if none).
func (a *Agent) networkState() *core.NetworkState {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.network
}

// clusterDomain is the services' DNS suffix (cluster.local unless the
// network state says otherwise).
func (a *Agent) clusterDomain() string {
	if ns := a.networkState(); ns != nil && ns.ClusterDomain != "" {
		return ns.ClusterDomain
	}
	return "cluster.local"
}

// localReadiness returns, for each pod this node runs, whether it is ready.
func (a *Agent) localReadiness() map[string]bool {
	rep := a.Snapshot()
	out := make(map[string]bool, len(rep.Pods))
	for _, p := range rep.Pods {
		out[p.UID] = (&core.Pod{Status: p.Status}).Ready()
	}
	return out
}

// netLoop syncs the service proxy whenever the network state or a local
// pod's readiness changed, retrying failures, and every Resync anyway (the
// proxy skips the work when its rules are already right); every Resync it
// also looks whether the node's address changed.
func (a *Agent) netLoop() {
	defer a.wg.Done()
	if a.Services == nil { // no proxy: only watch the node's address
		for a.sleep(a.Resync) {
			a.refreshHostIP()
		}
		return
	}
	var lastHash string
	var lastReady map[string]bool
	bo := backoff.Backoff{Min: time.Second, Max: 30 * time.Second}
	t := time.NewTimer(0)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-a.netDirty:
		case <-t.C:
			lastHash = "" // periodic: sync even if nothing seems changed
			a.refreshHostIP()
		}
		// Coalesce a burst (20 pods turning ready) into one sync.
		if !a.sleep(20 * time.Millisecond) {
			return
		}
		ns := a.networkState()
		if ns == nil {
			t.Reset(a.Resync)
			continue
		}
		ready := a.localReadiness()
		if ns.Hash == lastHash && sameReadiness(ready, lastReady) {
			continue
		}
		local := func(uid string) (bool, bool) {
			r, ok := ready[uid]
			return r, ok
		}
		if err := a.Services.Sync(ns, local); err != nil {
			if failures++; failures == 1 || failures%30 == 0 {
				a.Log.Error("programming services failed; retrying", "err", err, "failures", failures)
			}
			t.Reset(bo.Next())
			continue
		}
		if failures > 0 {
			a.Log.Info("services programmed again", "after", failures)
			failures = 0
		}
		bo.Reset()
		lastHash, lastReady = ns.Hash, ready
		t.Reset(a.Resync)
	}
}

func sameReadiness(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// serviceEnv returns the Kubernetes-style variables of the services of
// namespace that have a cluster IP: NAME_SERVICE_HOST, NAME_SERVICE_PORT,
// NAME_SERVICE_PORT_PORTNAME and the Docker-link ones (NAME_PORT,
// NAME_PORT_80_TCP, ...), as the kubelet sets them at container start.
func serviceEnv(ns *core.NetworkState, namespace string) []string {
	if ns == nil {
		return nil
	}
	var env []string
	for _, s := range ns.Services {
		if s.Namespace != namespace || s.ClusterIP == "" || s.ClusterIP == core.ClusterIPNone || len(s.Ports) == 0 {
			continue
		}
		name := strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_"))
		first := s.Ports[0]
		env = append(env,
			fmt.Sprintf("%s_SERVICE_HOST=%s", name, s.ClusterIP),
			fmt.Sprintf("%s_SERVICE_PORT=%d", name, first.Port),
			fmt.Sprintf("%s_PORT=%s://%s:%d", name, strings.ToLower(first.Protocol), s.ClusterIP, first.Port))
		for _, p := range s.Ports {
			proto := strings.ToLower(p.Protocol)
			prefix := fmt.Sprintf("%s_PORT_%d_%s", name, p.Port, strings.ToUpper(proto))
			if p.Name != "" {
				env = append(env, fmt.Sprintf("%s_SERVICE_PORT_%s=%d", name, strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_")), p.Port))
			}
			env = append(env,
				fmt.Sprintf("%s=%s://%s:%d", prefix, proto, s.ClusterIP, p.Port),
				fmt.Sprintf("%s_PROTO=%s", prefix, proto),
				fmt.Sprintf("%s_PORT=%d", prefix, p.Port),
				fmt.Sprintf("%s_ADDR=%s", prefix, s.ClusterIP))
		}
	}
	sort.Strings(env)
	return env
}
