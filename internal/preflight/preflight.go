// Package preflight inspects a machine before edgeagent or edgemaster runs
// on it, in the spirit of k3s check-config: cgroup controllers, kernel
// modules, iptables, containerd and runc, CNI plugins, the clock, free
// disk, ports and SQLite. Each check is a small function over a Host (the
// paths of /proc, /sys, /boot and /lib/modules), so tests point them at
// fake trees.
//
// It only looks: it never loads a module, mounts, writes outside a data
// directory's probe file, or changes the iptables rules (it lists them).
// What a check needs from the programs (containerd's version, SQLite) comes
// in as a function, so this package imports neither. It lives in internal/
// because three owners use it (edgeagent runs the checks at start, both
// cmds print them) and it knows no domain type: the agent turns results
// into a node condition itself.
package preflight

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Status is a check's verdict.
type Status int

const (
	Pass Status = iota
	// Warn does not stop the program from working, or could not be
	// checked (without root); it does not fail the run.
	Warn
	Fail
)

func (s Status) String() string {
	switch s {
	case Pass:
		return "PASS"
	case Warn:
		return "WARN"
	}
	return "FAIL"
}

// Result is what one check found.
type Result struct {
	Name   string
	Status Status
	Detail string
	// Fix says what to do about a Fail (or a Warn with a remedy).
	Fix string
	// NeedsRoot: the check could not look without root.
	NeedsRoot bool
}

// Check is one named check.
type Check struct {
	Name string
	Run  func(ctx context.Context) Result
}

// CheckTimeout bounds each check: a hung socket or program must not hang
// the whole run.
const CheckTimeout = 10 * time.Second

// Run runs the checks one after another and returns their results in
// order, each named after its check.
func Run(ctx context.Context, checks []Check) []Result {
	out := make([]Result, 0, len(checks))
	for _, c := range checks {
		cctx, cancel := context.WithTimeout(ctx, CheckTimeout)
		r := c.Run(cctx)
		cancel()
		r.Name = c.Name
		out = append(out, r)
	}
	return out
}

// Failed returns the results that failed.
func Failed(rs []Result) []Result {
	var out []Result
	for _, r := range rs {
		if r.Status == Fail {
			out = append(out, r)
		}
	}
	return out
}

// Print writes one line per result (STATUS, name, detail), an indented
// "fix:" line under each failure and warning that has one, and a summary.
// It returns how many failed.
func Print(w io.Writer, rs []Result) (failed int) {
	width := 0
	for _, r := range rs {
		width = max(width, len(r.Name))
	}
	var warned int
	var root []string
	for _, r := range rs {
		fmt.Fprintf(w, "%s  %-*s  %s\n", r.Status, width, r.Name, oneLine(r.Detail))
		if r.Fix != "" && r.Status != Pass {
			fmt.Fprintf(w, "      fix: %s\n", oneLine(r.Fix))
		}
		switch r.Status {
		case Fail:
			failed++
		case Warn:
			warned++
		}
		if r.NeedsRoot {
			root = append(root, r.Name)
		}
	}
	fmt.Fprintf(w, "%d checks: %d passed, %d %s, %d failed\n", len(rs), len(rs)-failed-warned, warned, plural(warned, "warning", "warnings"), failed)
	if len(root) > 0 {
		fmt.Fprintf(w, "not root: run as root to check %s\n", strings.Join(root, ", "))
	}
	return failed
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Host is where the checks look. The zero value is this machine (see
// Local); tests set the paths to fake trees.
type Host struct {
	Proc    string // /proc
	Sys     string // /sys
	Boot    string // /boot (cmdline.txt on a Raspberry Pi, config-RELEASE)
	Modules string // /lib/modules
	// Release is the running kernel's (uname -r).
	Release string
	// Root says whether the checks run as root; without it some cannot
	// look (iptables, a root-owned socket) and say so.
	Root bool
	Now  func() time.Time
	// Path is where programs (iptables, runc) are looked for: $PATH and
	// the sbin directories, which a user's PATH often lacks.
	Path []string
	// Exec runs a program found on Path and returns its combined output.
	Exec func(ctx context.Context, name string, args ...string) ([]byte, error)
}

// Local returns the Host of this machine, as the current user.
func Local() Host {
	var uts unix.Utsname
	unix.Uname(&uts)
	return Host{Release: string(bytes.TrimRight(uts.Release[:], "\x00")), Root: os.Geteuid() == 0}
}

// withDefaults fills the fields left empty with this machine's.
func (h Host) withDefaults() Host {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&h.Proc, "/proc")
	def(&h.Sys, "/sys")
	def(&h.Boot, "/boot")
	def(&h.Modules, "/lib/modules")
	if h.Now == nil {
		h.Now = time.Now
	}
	if h.Path == nil {
		h.Path = append(filepath.SplitList(os.Getenv("PATH")), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
	}
	if h.Exec == nil {
		h.Exec = func(ctx context.Context, name string, args ...string) ([]byte, error) {
			p, err := h.lookPath(name)
			if err != nil {
				return nil, err
			}
			cmd := exec.CommandContext(ctx, p, args...)
			cmd.Env = append(os.Environ(), "LC_ALL=C")
			return cmd.CombinedOutput()
		}
	}
	return h
}

// lookPath returns the first executable file called name on h.Path.
func (h Host) lookPath(name string) (string, error) {
	for _, dir := range h.Path {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

func (h Host) proc(p ...string) string { return filepath.Join(append([]string{h.Proc}, p...)...) }
func (h Host) sys(p ...string) string  { return filepath.Join(append([]string{h.Sys}, p...)...) }

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func readString(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

func pass(format string, a ...any) Result {
	return Result{Status: Pass, Detail: fmt.Sprintf(format, a...)}
}

func fail(fix, format string, a ...any) Result {
	return Result{Status: Fail, Detail: fmt.Sprintf(format, a...), Fix: fix}
}

func warn(fix, format string, a ...any) Result {
	return Result{Status: Warn, Detail: fmt.Sprintf(format, a...), Fix: fix}
}

// needsRoot is the verdict of a check that could not look without root.
func needsRoot(format string, a ...any) Result {
	return Result{Status: Warn, Detail: fmt.Sprintf(format, a...) + " (needs root)", NeedsRoot: true}
}
