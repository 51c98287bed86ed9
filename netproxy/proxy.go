package netproxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/edgeorch/edge/core"
)

// CheckPeriod is how often Sync checks, with one cheap iptables call, that
// the jump into our nat chains is still there.
const CheckPeriod = 30 * time.Second

// DefaultResyncPeriod is how long Sync trusts that the kernel holds what it
// last wrote before it checks and rewrites everything again.
const DefaultResyncPeriod = 5 * time.Minute

// Proxy programs one node's service rules. Configure the exported fields,
// then call Sync and SyncRoutes whenever the network state changes (and
// now and then: see ResyncPeriod). Methods are safe for concurrent use.
type Proxy struct {
	Node   string // this node's name: endpoints with this Node are local
	NodeIP string // this node's LAN address: LoadBalancer ports are opened on it
	// PodCIDR is this node's own pod subnet as its bridge has it: no route
	// to another node may cover it (a --pod-cidr that disagrees with the
	// master's plan must not cut the local pods off).
	PodCIDR string
	Log     *slog.Logger

	// IPTables, IPTablesSave and IPTablesRestore name the binaries; empty
	// means "iptables", "iptables-save" and "iptables-restore" from PATH,
	// whichever backend (nf_tables or legacy) the host selects. Set all
	// three to the -legacy or -nft variants to force one.
	IPTables, IPTablesSave, IPTablesRestore string

	// StateFile, if set, keeps which iptables tables existed before the
	// first Sync, so Cleanup can leave the node's tables as it found them
	// (see tables.go).
	StateFile string

	// ResyncPeriod bounds how long Sync relies on what it last wrote: in
	// between, it writes only the chains that changed and skips an
	// unchanged ruleset; after it, the next Sync reads the kernel's rules
	// and rewrites all of ours, repairing a flush by someone else. Zero
	// means DefaultResyncPeriod.
	ResyncPeriod time.Duration

	mu       sync.Mutex
	detected bool
	random   bool // MASQUERADE --random-fully is supported
	sysctls  bool // the sysctls are set
	// applied holds, per table, the content of each chain as last written;
	// nil when unknown (a fresh Proxy, or after a failure).
	applied   map[string]map[string][]byte
	lastFull  time.Time
	lastCheck time.Time
	lastSkip  string
	dgram     map[string]dgramPort // nil until the first successful Sync
	// onRestore, when set (by tests), sees every iptables-restore input.
	onRestore func(table string, input []byte)
}

func (p *Proxy) log() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.Default()
}

func (p *Proxy) bin(name, def string) string {
	if name != "" {
		return name
	}
	return def
}

// Sync programs the rules for st with one `iptables-restore --noflush` per
// table that rewrites our chains (all of them on the first Sync and every
// ResyncPeriod, else only those that changed), creates the jumps to them
// that are missing, and deletes our chains that st no longer needs. Each
// restore is one transaction, so no live service is ever without rules,
// even when a fresh Proxy (a restarted agent) takes over the rules of the
// previous one. An unchanged ruleset executes nothing.
//
// local(podUID) may override the readiness of endpoints on this node (the
// agent knows its own pods' health better than the last published state,
// above all while the master is away): when known, ready replaces the
// endpoint's Ready. local may be nil.
//
// Sync then deletes the conntrack entries of UDP and SCTP flows that would
// stick to an endpoint that is gone (see flushConntrack); that is best
// effort and only logged. Sync also sets the sysctls forwarding needs
// (net.ipv4.ip_forward, net.bridge.bridge-nf-call-iptables) in the
// network namespace it runs in.
func (p *Proxy) Sync(st *core.NetworkState, local func(podUID string) (ready, known bool)) error {
	if st == nil {
		return errors.New("netproxy: sync: no network state")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.detected {
		p.detect()
	}
	if !p.sysctls {
		p.sysctls = p.setSysctls()
	}

	start := time.Now()
	rs := render(st, p.Node, p.NodeIP, local, p.random)
	if skip := strings.Join(rs.skipped, "; "); skip != p.lastSkip {
		p.lastSkip = skip
		for _, s := range rs.skipped {
			p.log().Warn("netproxy: left out of the rules", "reason", s)
		}
	}
	period := p.ResyncPeriod
	if period <= 0 {
		period = DefaultResyncPeriod
	}
	full := p.applied == nil || time.Since(p.lastFull) >= period
	if !full && time.Since(p.lastCheck) >= CheckPeriod {
		// Someone may have flushed the tables (a firewall reload, a
		// netfilter-persistent restore): then write everything now, not
		// at the next full resync minutes later.
		p.lastCheck = time.Now()
		full = !p.jumpsIntact()
	}
	var written, removed int
	var err error
	if full {
		written, removed, err = p.applyAll(rs)
	} else {
		written, removed, err = p.applyChanges(rs)
	}
	if err != nil {
		p.applied = nil // the kernel's state is unknown: rewrite all next time
		return err
	}
	p.applied = map[string]map[string][]byte{"nat": rs.nat.rules, "filter": rs.filter.rules}
	if full {
		p.lastFull = time.Now()
		p.lastCheck = p.lastFull
	}
	if written+removed > 0 {
		p.log().Info("netproxy: rules applied", "services", len(st.Services), "full", full,
			"chainsWritten", written, "chainsRemoved", removed, "took", time.Since(start).Round(time.Microsecond))
	}
	p.flushConntrack(rs.dgram)
	return nil
}

// jumpsIntact reports whether nat PREROUTING still jumps to our
// EDGE-SERVICES chain, and that chain still exists.
func (p *Proxy) jumpsIntact() bool {
	j := jumps[0]
	args := []string{"-w", "5", "-t", j.table, "-C", j.chain}
	args = append(args, splitArgs(j.spec)...)
	args = append(args, "-j", j.target)
	if err := exec.Command(p.bin(p.IPTables, "iptables"), args...).Run(); err != nil {
		p.log().Warn("netproxy: our rules are gone (a firewall reload?); writing them all again")
		return false
	}
	return true
}

// splitArgs splits a rule spec into words, keeping "quoted words" whole.
func splitArgs(spec string) []string {
	var out []string
	for spec = strings.TrimSpace(spec); spec != ""; spec = strings.TrimSpace(spec) {
		if spec[0] == '"' {
			end := strings.IndexByte(spec[1:], '"')
			if end < 0 {
				return append(out, spec[1:])
			}
			out = append(out, spec[1:end+1])
			spec = spec[end+2:]
			continue
		}
		w, rest, _ := strings.Cut(spec, " ")
		out = append(out, w)
		spec = rest
	}
	return out
}

// detect asks go-iptables for the version, to know whether MASQUERADE
// --random-fully is there (iptables 1.6.2; Debian 9 had 1.6.0).
func (p *Proxy) detect() {
	p.detected = true
	ipt, err := iptables.New(iptables.Path(p.bin(p.IPTables, "iptables")), iptables.Timeout(5))
	if err != nil {
		p.log().Warn("netproxy: cannot tell the iptables version; masquerading without --random-fully", "err", err)
		return
	}
	p.random = ipt.HasRandomFully()
	v1, v2, v3 := ipt.GetIptablesVersion()
	p.log().Debug("netproxy: iptables", "version", fmt.Sprintf("%d.%d.%d", v1, v2, v3), "randomFully", p.random)
}

// applyAll rewrites all our chains of each table, adds the missing jumps
// and deletes the EDGE- chains the kernel holds that rs does not have. It
// returns how many chains it wrote and removed.
func (p *Proxy) applyAll(rs *ruleset) (written, removed int, err error) {
	saved, err := p.saveAll()
	if err != nil {
		return 0, 0, err
	}
	if err := p.recordTables(saved); err != nil {
		return 0, 0, err
	}
	if err := p.bridgeRejects(rs, savedRules(saved["filter"], chainServices)); err != nil {
		return 0, 0, err
	}
	for _, t := range []*table{&rs.nat, &rs.filter} {
		var stale []string
		for _, c := range ourChains(saved[t.name]) {
			if _, ok := t.rules[c]; !ok {
				stale = append(stale, c)
			}
		}
		var insert []string
		for _, j := range jumps {
			if j.table == t.name && !hasJump(saved[t.name], j.chain, j.target) {
				insert = append(insert, "-I "+j.chain+" 1 "+j.spec+" -j "+j.target)
			}
		}
		if err := p.restore(t.name, t.restore(t.chains, stale, insert)); err != nil {
			return written, removed, err
		}
		written, removed = written+len(t.chains), removed+len(stale)
	}
	return written, removed, nil
}

// bridgeRejects keeps a service port from being briefly neither
// DNATed nor rejected while the two tables change one after the other
// (a new connection would then go to the cluster IP itself and wait for
// an ARP answer that never comes). Ports gaining endpoints need the nat
// table written first, ports losing them the filter table: so before the
// nat table, the filter table gets the REJECTs of both the old and the
// new state (a DNATed packet no longer matches a REJECT, which is for the
// service's own address), and after it, the new state alone. old is the
// "-A" lines of the filter EDGE-SERVICES chain in the kernel now.
func (p *Proxy) bridgeRejects(rs *ruleset, old []byte) error {
	cur := rs.filter.rules[chainServices]
	union := append([]byte(nil), old...)
	adds := false
	for _, l := range bytes.SplitAfter(cur, []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 && !bytes.Contains(old, l) {
			union, adds = append(union, l...), true
		}
	}
	if !adds {
		return nil // only REJECTs to drop: after the nat table is right
	}
	t := table{name: "filter", rules: map[string][]byte{chainServices: union}}
	return p.restore("filter", t.restore([]string{chainServices}, nil, nil))
}

// savedRules returns the "-A chain" lines of iptables-save output.
func savedRules(saved []byte, chain string) []byte {
	var out []byte
	prefix := []byte("-A " + chain + " ")
	for _, l := range bytes.SplitAfter(saved, []byte("\n")) {
		if bytes.HasPrefix(l, prefix) {
			out = append(out, l...)
		}
	}
	return out
}

// applyChanges writes only the chains whose content differs from what was
// last applied, and deletes the chains rs no longer has: a chain appears or
// goes only together with a change in the chain that jumps to it, so each
// transaction stays consistent. A table without changes is not touched.
func (p *Proxy) applyChanges(rs *ruleset) (written, removed int, err error) {
	if err := p.bridgeRejects(rs, p.applied["filter"][chainServices]); err != nil {
		return 0, 0, err
	}
	for _, t := range []*table{&rs.nat, &rs.filter} {
		old := p.applied[t.name]
		var write, stale []string
		for _, c := range t.chains {
			if o, ok := old[c]; !ok || !bytes.Equal(o, t.rules[c]) {
				write = append(write, c)
			}
		}
		for c := range old {
			if _, ok := t.rules[c]; !ok {
				stale = append(stale, c)
			}
		}
		if len(write)+len(stale) == 0 {
			continue
		}
		slices.Sort(stale)
		if err := p.restore(t.name, t.restore(write, stale, nil)); err != nil {
			return written, removed, err
		}
		written, removed = written+len(write), removed+len(stale)
	}
	return written, removed, nil
}

// save returns `iptables-save -t table`.
func (p *Proxy) save(table string) ([]byte, error) {
	var out, stderr bytes.Buffer
	cmd := exec.Command(p.bin(p.IPTablesSave, "iptables-save"), "-t", table)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("netproxy: %s -t %s: %w: %s", cmd.Path, table, err, strings.TrimSpace(stderr.String()))
	}
	return out.Bytes(), nil
}

// saveAll returns `iptables-save` split by table: one run for all tables
// costs half of one per table (the nf_tables backend reads the whole
// ruleset either way).
func (p *Proxy) saveAll() (map[string][]byte, error) {
	var out, stderr bytes.Buffer
	cmd := exec.Command(p.bin(p.IPTablesSave, "iptables-save"))
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("netproxy: %s: %w: %s", cmd.Path, err, strings.TrimSpace(stderr.String()))
	}
	tables := map[string][]byte{}
	name := ""
	for _, l := range bytes.SplitAfter(out.Bytes(), []byte("\n")) {
		if len(l) > 1 && l[0] == '*' {
			name = string(bytes.TrimSpace(l[1:]))
		}
		if name != "" {
			tables[name] = append(tables[name], l...)
		}
	}
	return tables, nil
}

// failedLine finds the line number in iptables-restore's complaint: "line
// 7 failed" (rules the kernel refused) or "Error occurred at line: 7"
// (parse errors).
var failedLine = regexp.MustCompile(`line:? (\d+)`)

// restore feeds input to `iptables-restore --noflush`. On failure the
// error quotes the rule iptables-restore refused.
func (p *Proxy) restore(table string, input []byte) error {
	if p.onRestore != nil {
		p.onRestore(table, input)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(p.bin(p.IPTablesRestore, "iptables-restore"), "--noflush", "-w", "5")
	cmd.Stdin, cmd.Stderr = bytes.NewReader(input), &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if m := failedLine.FindStringSubmatch(msg); m != nil {
			n, _ := strconv.Atoi(m[1])
			if lines := strings.Split(string(input), "\n"); n >= 1 && n <= len(lines) {
				msg += fmt.Sprintf(" (line %d: %s)", n, lines[n-1])
			}
		}
		return fmt.Errorf("netproxy: iptables-restore of table %s: %w: %s", table, err, msg)
	}
	return nil
}

// ourChains lists the EDGE- chains declared in iptables-save output.
func ourChains(saved []byte) []string {
	var chains []string
	sc := bufio.NewScanner(bytes.NewReader(saved))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, ":"+chainPrefix) {
			if name, _, ok := strings.Cut(l[1:], " "); ok && isOurChain(name) {
				chains = append(chains, name)
			}
		}
	}
	return chains
}

// ourChainName matches the chains this package makes: the fixed ones and
// the per-service and per-endpoint ones (a prefix and 16 base32
// characters), and no one else's EDGE-something.
var ourChainName = regexp.MustCompile(`^EDGE-(SERVICES|NODEPORTS|POSTROUTING|MARK-MASQ|FORWARD|[A-Z]{3}-[A-Z2-7]{16})$`)

func isOurChain(name string) bool { return ourChainName.MatchString(name) }

// ourJumps returns the rules of built-in chains that jump to an EDGE- chain,
// as iptables-save prints them (`-A CHAIN ...`).
func ourJumps(saved []byte) []string {
	var rules []string
	sc := bufio.NewScanner(bytes.NewReader(saved))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "-A ") || strings.HasPrefix(l, "-A "+chainPrefix) {
			continue
		}
		for _, verb := range []string{" -j ", " -g "} {
			if _, target, ok := strings.Cut(l, verb); ok {
				if name, _, _ := strings.Cut(target, " "); isOurChain(name) {
					rules = append(rules, l)
					break
				}
			}
		}
	}
	return rules
}

// hasJump reports whether chain holds a rule jumping to target.
func hasJump(saved []byte, chain, target string) bool {
	for _, l := range ourJumps(saved) {
		if strings.HasPrefix(l, "-A "+chain+" ") && (strings.HasSuffix(l, " -j "+target) || strings.Contains(l, " -j "+target+" ")) {
			return true
		}
	}
	return false
}

// setSysctls turns on what the rules need in this network namespace:
// forwarding (pods and services are routed), and iptables on bridged
// traffic, without which a pod reaching a service whose endpoint sits on
// the same bridge gets its reply straight from the pod's address, which it
// drops. The bridge knob exists only once br_netfilter is loaded (it is
// per network namespace since Linux 5.3). It reports whether both are set.
func (p *Proxy) setSysctls() bool {
	ok := true
	for _, s := range []struct{ path, why string }{
		{"/proc/sys/net/ipv4/ip_forward", "pods and services cannot be reached from other hosts"},
		{"/proc/sys/net/bridge/bridge-nf-call-iptables", "load br_netfilter (modprobe br_netfilter): a pod cannot reach a service whose endpoint shares its bridge"},
	} {
		if cur, err := os.ReadFile(s.path); err == nil && strings.TrimSpace(string(cur)) == "1" {
			continue
		}
		if err := os.WriteFile(s.path, []byte("1\n"), 0o644); err != nil {
			ok = false
			p.log().Error("netproxy: cannot set sysctl", "path", s.path, "err", err, "consequence", s.why)
		}
	}
	return ok
}

// Cleanup removes every chain, jump rule and route this package made, in
// the nat and filter tables of the default iptables binaries, tolerating
// any already gone (`edgeagent --cleanup`). It leaves sysctls as they are:
// ip_forward may be needed by others. (*Proxy).Cleanup with a StateFile
// also removes the empty tables the first Sync created.
func Cleanup() error { return (&Proxy{}).Cleanup() }

// Cleanup is the package Cleanup with p's binaries. The next Sync of p
// programs everything again.
func (p *Proxy) Cleanup() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, t := range []string{"nat", "filter"} {
		saved, err := p.save(t)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		chains := ourChains(saved)
		rules := ourJumps(saved)
		if len(chains) == 0 && len(rules) == 0 {
			continue
		}
		// One transaction: delete the jumps (as iptables-save printed them,
		// so whatever their comment), empty our chains, then drop them.
		var b bytes.Buffer
		b.WriteString("*" + t + "\n")
		for _, c := range chains {
			b.WriteString(":" + c + " - [0:0]\n")
		}
		for _, r := range rules {
			b.WriteString("-D " + strings.TrimPrefix(r, "-A ") + "\n")
		}
		for _, c := range chains {
			b.WriteString("-X " + c + "\n")
		}
		b.WriteString("COMMIT\n")
		if err := p.restore(t, b.Bytes()); err != nil {
			errs = append(errs, err)
		}
	}
	if err := cleanupRoutes(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		if err := p.removeTables(); err != nil {
			errs = append(errs, err)
		}
	}
	p.applied, p.dgram = nil, nil
	return errors.Join(errs...)
}
