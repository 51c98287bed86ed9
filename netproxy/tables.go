package netproxy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"

	"github.com/google/nftables"

	"github.com/edgeorch/edge/internal/fsutil"
)

// Under the nf_tables backend, iptables makes a table (nat, filter) the
// first time a rule goes into it, and nothing in iptables deletes one: a
// node where nothing used iptables before would keep two empty tables
// after an uninstall, and its iptables-save would no longer be what it
// was. So the first full Sync writes down which tables existed (in
// StateFile), and Cleanup deletes, through nf_tables' netlink API, the
// ones it made that are empty again. Under the legacy backend tables are
// kernel modules that come and go with them: nothing to do.

// recordTables writes the tables of saved to p.StateFile unless it exists
// (the node's state before the agent's very first rule).
func (p *Proxy) recordTables(saved map[string][]byte) error {
	if p.StateFile == "" {
		return nil
	}
	if _, err := os.Stat(p.StateFile); err == nil {
		return nil
	}
	var names []string
	for t := range saved {
		names = append(names, t)
	}
	slices.Sort(names)
	if err := fsutil.WriteFileAtomic(p.StateFile, []byte(strings.Join(names, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("netproxy: recording the node's iptables tables: %w", err)
	}
	return nil
}

// builtinAccept matches a built-in chain with its default policy.
var builtinAccept = regexp.MustCompile(`^:(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) ACCEPT`)

// emptyTable reports whether iptables-save output of one table holds
// nothing but built-in chains with policy ACCEPT.
func emptyTable(saved []byte) bool {
	for _, l := range strings.Split(string(saved), "\n") {
		switch {
		case l == "" || l == "COMMIT" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "*"):
		case strings.HasPrefix(l, ":") && builtinAccept.MatchString(l):
		default:
			return false
		}
	}
	return true
}

// removeTables deletes the nat and filter tables that p.StateFile says
// did not exist before the agent, when they are empty now, and then the
// state file.
func (p *Proxy) removeTables() error {
	if p.StateFile == "" {
		return nil
	}
	b, err := os.ReadFile(p.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	before := strings.Fields(string(b))
	out, err := exec.Command(p.bin(p.IPTables, "iptables"), "--version").Output()
	if err != nil || !bytes.Contains(out, []byte("nf_tables")) {
		return os.Remove(p.StateFile)
	}
	saved, err := p.saveAll()
	if err != nil {
		return err
	}
	var c nftables.Conn // the network namespace of this thread
	del := 0
	for _, t := range []string{"nat", "filter"} {
		if s, ok := saved[t]; ok && !slices.Contains(before, t) && emptyTable(s) {
			c.DelTable(&nftables.Table{Name: t, Family: nftables.TableFamilyIPv4})
			del++
		}
	}
	if del > 0 {
		if err := c.Flush(); err != nil {
			return fmt.Errorf("netproxy: deleting the empty iptables tables the agent made: %w", err)
		}
	}
	return os.Remove(p.StateFile)
}
