package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// chattyManifest prints numbered lines in bursts: 30000 (~320 KB) three
// seconds after it starts, 30000 more once TRIGGER/go exists, then idles.
const chattyManifest = `apiVersion: v1
kind: Pod
metadata: {name: chatty}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {name: trigger, hostPath: {path: TRIGGER, type: Directory}}
  containers:
  - name: main
    image: edge.local/demo:latest
    command: ["/bin/sh", "-c"]
    args:
    - |
      burst() {
        i=$1
        while [ $i -lt $2 ]; do
          echo "line $i"
          i=$((i+1))
          if [ $((i % 1000)) = 0 ]; then sleep 0.1; fi
        done
      }
      sleep 3
      burst 0 30000
      while [ ! -e /trigger/go ]; do sleep 0.2; done
      burst 30000 60000
      exec sleep 3600
    volumeMounts: [{name: trigger, mountPath: /trigger}]
    resources:
      limits: {memory: 32Mi, cpu: 500m}
`

const (
	rotMaxSize  = 64 << 10
	rotMaxFiles = 3
)

// TestLogRotation runs a container printing numbered lines fast with
// small log caps set by flag: the log on disk stays under the cap, keeps
// a contiguous window of the newest lines, edgectl logs tails across the
// files and follows across rotations without losing or repeating a line,
// and rotation goes on while the agent is down.
func TestLogRotation(t *testing.T) {
	needRoot(t)
	c := newClusterAgentArgs(t, []string{"--container-log-max-size", "64Ki", "--container-log-max-files", strconv.Itoa(rotMaxFiles)})
	trigger := filepath.Join(c.dir, "trigger")
	if err := os.MkdirAll(trigger, 0o755); err != nil {
		t.Fatal(err)
	}
	c.apply(strings.Replace(chattyManifest, "TRIGGER", trigger, 1))
	c.runningPods(1, "")

	// Follow from the start (the container waits 3 s before printing).
	followOut := filepath.Join(c.dir, "follow.out")
	out, err := os.Create(followOut)
	if err != nil {
		t.Fatal(err)
	}
	follow := exec.Command(filepath.Join(binDir, "edgectl"), "--config", c.config, "logs", "-f", "chatty")
	follow.Stdout, follow.Stderr = out, out
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	out.Close()
	t.Cleanup(func() { follow.Process.Kill(); follow.Wait() })

	logDir := func() string {
		dirs, _ := filepath.Glob(filepath.Join(c.dir, "agent", "logs", "default_chatty_*"))
		if len(dirs) != 1 {
			t.Fatalf("log directories %v", dirs)
		}
		return dirs[0]
	}()
	// The shim runs the small driver binary installed beside the agent.
	drivers := logDriverPIDs(logDir)
	if len(drivers) != 1 {
		t.Fatalf("%d log driver processes for the pod, want 1", len(drivers))
	}
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", drivers[0])); filepath.Base(exe) != "edge-logdriver" {
		t.Fatalf("log driver process runs %q, want edge-logdriver", exe)
	}
	// While lines pour out, the files never exceed the caps.
	var peak int64
	waitFor(t, 2*time.Minute, "line 29999 in the follower's output", func() error {
		if n, size, err := logFiles(logDir); err != nil {
			return err
		} else if n > rotMaxFiles || size > rotMaxFiles*rotMaxSize {
			t.Fatalf("%d log files, %d bytes: caps %d files of %d bytes", n, size, rotMaxFiles, rotMaxSize)
		} else {
			peak = max(peak, size)
		}
		b, _ := os.ReadFile(followOut)
		if !strings.Contains(string(b), "line 29999\n") {
			return fmt.Errorf("follower has %d bytes", len(b))
		}
		return nil
	})
	b, _ := os.ReadFile(followOut)
	if first, last := contiguousLines(t, "edgectl logs -f", string(b)); first != 0 || last != 29999 {
		t.Fatalf("edgectl logs -f: lines %d..%d, want 0..29999", first, last)
	}
	t.Logf("followed 30000 lines (%d bytes) across rotations; log on disk peaked at %d bytes", len(b), peak)
	if _, err := os.Stat(filepath.Join(logDir, "main.log.3")); err != nil {
		t.Fatalf("not rotated 3 times: %v", err)
	}

	// The whole log: a contiguous window of the newest lines, under the cap.
	all := c.mustEdgectl("logs", "chatty")
	first, last := contiguousLines(t, "edgectl logs", all)
	if last != 29999 || first == 0 || len(all) > rotMaxFiles*rotMaxSize {
		t.Fatalf("edgectl logs: lines %d..%d (%d bytes)", first, last, len(all))
	}
	// --tail spans files: more lines than the live file holds.
	for _, n := range []int{5, 10000} {
		tail := c.mustEdgectl("logs", "chatty", "--tail", strconv.Itoa(n))
		if f, l := contiguousLines(t, "edgectl logs --tail", tail); f != 30000-n || l != 29999 {
			t.Fatalf("edgectl logs --tail %d: lines %d..%d", n, f, l)
		}
	}

	// With the agent down, the container's next burst is still written
	// and rotated: the shim runs the log driver, not the agent.
	c.agent.stop(syscall.SIGKILL, 5*time.Second)
	if err := os.WriteFile(filepath.Join(trigger, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "line 59999 on disk with the agent down", func() error {
		n, size, err := logFiles(logDir)
		if err != nil {
			return err
		}
		if n > rotMaxFiles || size > rotMaxFiles*rotMaxSize {
			t.Fatalf("%d log files, %d bytes: caps %d files of %d bytes", n, size, rotMaxFiles, rotMaxSize)
		}
		b, err := os.ReadFile(filepath.Join(logDir, "main.log"))
		if err != nil || !strings.HasSuffix(string(b), "line 59999\n") {
			return fmt.Errorf("not yet (%v)", err)
		}
		return nil
	})
	c.startAgent()
	c.waitNodeReady(30 * time.Second)
	var tail string
	waitFor(t, 30*time.Second, "logs through the restarted agent", func() error {
		var err error
		tail, _, err = c.edgectl("logs", "chatty", "--tail", "3")
		return err
	})
	if tail != "line 59997\nline 59998\nline 59999\n" {
		t.Fatalf("edgectl logs --tail 3 after the agent's restart: %q", tail)
	}
	all = c.mustEdgectl("logs", "chatty")
	if first, last := contiguousLines(t, "edgectl logs", all); last != 59999 || first <= 30000 {
		t.Fatalf("edgectl logs after the agent's restart: lines %d..%d", first, last)
	}
}

// logFiles counts a container's log files (main.log and its rotated
// files) and their bytes.
func logFiles(dir string) (int, int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	n, size := 0, int64(0)
	for _, e := range entries {
		if name := e.Name(); name == "main.log" || rotatedLog.MatchString(name) {
			info, err := e.Info()
			if err != nil {
				continue // rotated away since the listing
			}
			n++
			size += info.Size()
		}
	}
	return n, size, nil
}

var rotatedLog = regexp.MustCompile(`^main\.log\.[1-9][0-9]*$`)

// contiguousLines checks that s is "line N" lines numbered one after the
// other, and returns the first and last numbers.
func contiguousLines(t *testing.T, what, s string) (int, int) {
	t.Helper()
	if !strings.HasSuffix(s, "\n") {
		t.Fatalf("%s: does not end with a whole line: %q", what, s[max(0, len(s)-100):])
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	first := -1
	for i, l := range lines {
		n, err := strconv.Atoi(strings.TrimPrefix(l, "line "))
		if err != nil || !strings.HasPrefix(l, "line ") {
			t.Fatalf("%s: line %d is %q", what, i, l)
		}
		if i == 0 {
			first = n
		} else if n != first+i {
			t.Fatalf("%s: line %d is %q, want line %d: lines lost or repeated", what, i, l, first+i)
		}
	}
	return first, first + len(lines) - 1
}
