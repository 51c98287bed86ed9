package netproxy

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Real iptables, routes and conntrack, inside network namespaces the tests
// create: never the host's.

var nsSeq atomic.Int32

// newNetns creates a named network namespace that is deleted when the test
// ends, even on failure, and returns its name and a handle to it.
func newNetns(tb testing.TB) (string, netns.NsHandle) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: the test creates a network namespace (ip netns add)")
	}
	for _, bin := range []string{"ip", "iptables", "iptables-save", "iptables-restore"} {
		if _, err := exec.LookPath(bin); err != nil {
			tb.Skipf("needs %s (iproute2, iptables): %v", bin, err)
		}
	}
	name := fmt.Sprintf("edgetest-%d-%d", os.Getpid(), nsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		tb.Skipf("ip netns add is not available here: %v: %s", err, out)
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			tb.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	h, err := netns.GetFromName(name)
	if err != nil {
		tb.Fatalf("open netns %s: %v", name, err)
	}
	tb.Cleanup(func() { h.Close() })
	return name, h
}

// enterNetns moves the calling goroutine, which must be the test's own,
// into a fresh network namespace for the rest of the test: its OS thread
// is locked and switched, and the processes it execs (iptables, ip)
// inherit the thread's namespace, which is checked before anything runs.
// Subtests run on other goroutines, so they must call enterNetns again.
// At the end the thread goes back to the host's namespace; if that fails
// it stays locked and Go discards it.
func enterNetns(tb testing.TB) string {
	tb.Helper()
	name, h := newNetns(tb)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		tb.Fatalf("current netns: %v", err)
	}
	if err := netns.Set(h); err != nil {
		runtime.UnlockOSThread()
		tb.Fatalf("enter netns %s: %v", name, err)
	}
	tb.Cleanup(func() {
		defer orig.Close()
		if err := netns.Set(orig); err != nil {
			tb.Errorf("back to the host netns: %v (the thread stays locked and is discarded)", err)
			return
		}
		runtime.UnlockOSThread()
	})
	checkChildNetns(tb, h)
	run(tb, "ip", "link", "set", "lo", "up")
	return name
}

// checkChildNetns fails the test unless a child process runs in h: an
// iptables call in the wrong namespace would change the host's rules.
func checkChildNetns(tb testing.TB, h netns.NsHandle) {
	tb.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		tb.Fatalf("stat netns: %v", err)
	}
	out, err := exec.Command("readlink", "/proc/self/ns/net").Output()
	if want := fmt.Sprintf("net:[%d]", st.Ino); err != nil || strings.TrimSpace(string(out)) != want {
		tb.Fatalf("child processes are in %q, not the test's netns %s (%v): refusing to touch iptables", out, want, err)
	}
}

// run runs a command (in the calling thread's netns) or fails the test.
func run(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// saveAll returns iptables-save of the nat and filter tables without
// comment lines and with zeroed counters, for comparisons.
func saveAll(tb testing.TB) string {
	tb.Helper()
	var b bytes.Buffer
	for _, t := range []string{"nat", "filter"} {
		for _, l := range strings.Split(run(tb, "iptables-save", "-t", t), "\n") {
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			b.WriteString(counters.ReplaceAllString(l, "[0:0]") + "\n")
		}
	}
	return b.String()
}
