package logrotate

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edge/internal/logrotate/logtest"
	"golang.org/x/sys/unix"
)

var (
	logLines        = logtest.Lines
	checkContiguous = logtest.CheckContiguous
)

// readAllLogs returns the log at path across its files, with the files'
// names and sizes.
func readAllLogs(t *testing.T, path string) (string, []string, []int64) {
	t.Helper()
	files, err := OpenFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	defer CloseAll(files)
	return logtest.ReadFiles(t, files)
}

func TestLogRotationCaps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logs", "app.log")
	l, err := OpenFile(path, 100, 3)
	if err != nil {
		t.Fatal(err)
	}
	// Writes of every size: one line, several, more than a file.
	n := 0
	for _, k := range []int{1, 3, 1, 20, 2, 7, 1, 1, 13, 40, 5} {
		if _, err := l.Write([]byte(logLines(n, n+k))); err != nil {
			t.Fatal(err)
		}
		n += k
		all, names, sizes := readAllLogs(t, path)
		if len(names) > 3 {
			t.Fatalf("%d files, cap 3: %v", len(names), names)
		}
		for i, s := range sizes {
			if s > 100 {
				t.Fatalf("%s has %d bytes, cap 100", names[i], s)
			}
		}
		checkContiguous(t, all, n)
	}
	l.Close()
	_, names, _ := readAllLogs(t, path)
	if len(names) != 3 || names[2] != "app.log" {
		t.Fatalf("files %v", names)
	}
	// Numbered oldest to newest, each starting with a whole line.
	a, _ := strconv.Atoi(strings.TrimPrefix(names[0], "app.log."))
	b, _ := strconv.Atoi(strings.TrimPrefix(names[1], "app.log."))
	if b != a+1 {
		t.Fatalf("rotated files %v", names)
	}
	for _, name := range names {
		data, _ := os.ReadFile(filepath.Join(filepath.Dir(path), name))
		if !bytes.HasPrefix(data, []byte("line ")) {
			t.Fatalf("%s starts with %q", name, data[:min(10, len(data))])
		}
	}

	// A new writer (the next task's driver) carries on the numbering, and
	// lower caps apply at once.
	l, err = OpenFile(path, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	_, names, _ = readAllLogs(t, path)
	if len(names) != 2 || names[0] != fmt.Sprintf("app.log.%d", b) {
		t.Fatalf("after reopening with 2 files: %v", names)
	}
	l.Write([]byte(logLines(n, n+30)))
	n += 30
	l.Close()
	all, names, _ := readAllLogs(t, path)
	if c, _ := strconv.Atoi(strings.TrimPrefix(names[0], "app.log.")); c <= b {
		t.Fatalf("numbering restarted: %v after app.log.%d", names, b)
	}
	checkContiguous(t, all, n)
}

func TestLogRotationLongLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	l, err := OpenFile(path, 64, 3)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 150) + "\n"
	l.Write([]byte("short\n" + long + "end\n"))
	l.Close()
	all, names, sizes := readAllLogs(t, path)
	for i, s := range sizes {
		if s > 64 {
			t.Fatalf("%s: %d bytes", names[i], s)
		}
	}
	// The long line is cut into whole files; "short" went with the cap.
	if all != long+"end\n" || len(names) != 3 {
		t.Fatalf("log %q", all)
	}
}

// pipeDriver runs a log driver on two pipes; it returns their write ends
// and a channel closed when the driver returns.
func pipeDriver(t *testing.T, d *driver) (stdout, stderr *os.File, done chan struct{}) {
	t.Helper()
	r1, w1, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r2, w2, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	done = make(chan struct{})
	go func() {
		defer close(done)
		d.run([]*os.File{r1, r2}, func() { close(ready) }, nil)
		r1.Close()
		r2.Close()
	}()
	<-ready
	t.Cleanup(func() { w1.Close(); w2.Close(); <-done })
	return w1, w2, done
}

func TestLogDriver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	d := &driver{path: path, maxSize: 300, maxFiles: 100, bufferMax: 1 << 20, partialWait: 20 * time.Millisecond}
	stdout, stderr, done := pipeDriver(t, d)
	// Lines from both streams stay whole.
	var wg sync.WaitGroup
	for _, s := range []struct {
		f      *os.File
		prefix string
	}{{stdout, "out"}, {stderr, "err"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				fmt.Fprintf(s.f, "%s %d\n", s.prefix, i)
			}
		}()
	}
	wg.Wait()
	// A prompt without a line end shows after a quiet moment.
	fmt.Fprint(stdout, "prompt> ")
	deadline := time.Now().Add(10 * time.Second)
	for {
		all, _, _ := readAllLogs(t, path)
		if strings.HasSuffix(all, "prompt> ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partial line not written: %q", all[max(0, len(all)-50):])
		}
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Fprint(stdout, "yes\n")
	stdout.Close()
	stderr.Close()
	<-done
	all, names, sizes := readAllLogs(t, path)
	next := map[string]int{}
	for _, line := range strings.Split(strings.TrimSuffix(all, "\n"), "\n") {
		if line == "prompt> yes" || line == "prompt> " {
			continue
		}
		var prefix string
		var i int
		if _, err := fmt.Sscanf(line, "%s %d", &prefix, &i); err != nil || next[prefix] != i {
			t.Fatalf("line %q, want %s %d", line, prefix, next[prefix])
		}
		next[prefix]++
	}
	if next["out"] != 200 || next["err"] != 200 {
		t.Fatalf("lines %v", next)
	}
	for i, s := range sizes {
		if s > 300 {
			t.Fatalf("%s: %d bytes", names[i], s)
		}
	}
	if _, err := os.Stat(path + ".lock"); err != nil {
		t.Fatal(err)
	}
}

// TestLogDriverSlowDisk: while the log cannot be written the container's
// writes still complete; lines are dropped past the buffer, and the log
// says how many bytes.
func TestLogDriverSlowDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	// The disk "stalls": another writer holds the log's lock.
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	d := &driver{path: path, maxSize: 10 << 20, maxFiles: 2, bufferMax: 64 << 10, partialWait: time.Second}
	stdout, stderr, done := pipeDriver(t, d)
	const n = 100000 // ~690 KB: ten times a pipe's 64 KiB and far past the buffer
	written := make(chan struct{})
	go func() {
		stdout.Write([]byte(logLines(0, n)))
		close(written)
	}()
	select {
	case <-written:
	case <-time.After(30 * time.Second):
		t.Fatal("the container's writes blocked on the stalled log")
	}
	unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	stdout.Close()
	stderr.Close()
	<-done
	all, _, _ := readAllLogs(t, path)
	lines := strings.Split(strings.TrimSuffix(all, "\n"), "\n")
	var kept, dropped int
	for i, l := range lines {
		var k int
		if _, err := fmt.Sscanf(l, "[edge log driver: %d bytes of output dropped", &k); err == nil {
			dropped += k
			continue
		}
		if i < 10 && l != fmt.Sprintf("line %d", i) || !strings.HasPrefix(l, "line ") {
			t.Fatalf("line %d: %q", i, l)
		}
		kept += len(l) + 1
	}
	// Kept: the buffer, what was still in the pipe when the disk came back,
	// and the read the driver had in hand then (up to 32 KiB).
	if dropped == 0 || kept > 64<<10+64<<10+32<<10 || kept+dropped != len(logLines(0, n)) {
		t.Fatalf("kept %d bytes, dropped %d, of %d written", kept, dropped, len(logLines(0, n)))
	}
	if !strings.HasPrefix(all, "line 0\n") {
		t.Fatalf("log starts %q", all[:20])
	}
}

// TestDriverStop: after SIGTERM (the shim deleting the task) the driver
// drains for a while, then exits even if a stream stays open (a process
// of the container's that outlived it).
func TestDriverStop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	defer r.Close()
	d := &driver{path: path, maxSize: 1 << 20, maxFiles: 2, bufferMax: 1 << 20, partialWait: time.Second, stopGrace: 50 * time.Millisecond}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.run([]*os.File{r}, nil, stop)
	}()
	fmt.Fprint(w, "last words\nno end")
	deadline := time.Now().Add(10 * time.Second)
	for b, _ := os.ReadFile(path); !strings.HasPrefix(string(b), "last words\n"); b, _ = os.ReadFile(path) {
		if time.Now().After(deadline) {
			t.Fatalf("log %q", b)
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the driver did not exit after SIGTERM")
	}
	if b, _ := os.ReadFile(path); string(b) != "last words\n" && string(b) != "last words\nno end" {
		t.Fatalf("log %q", b)
	}
}
