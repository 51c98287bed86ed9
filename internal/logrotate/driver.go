package logrotate

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The log driver writes a container's stdout and stderr to its log files
// and rotates them. containerd's shim runs it, one process per task, given
// a binary:// log URI naming the driver's executable (edge-logdriver
// beside the agent, else the agent itself): the shim hands it the read
// ends of the container's output pipes as fds 3 and 4 and waits on fd 5
// until it is ready.
//
// Why a driver process, and not one of the alternatives:
//   - the shim writing a file:// log itself (as before) cannot rotate: the
//     shim holds the file open for the task's life and never reopens it,
//     and containerd's client has no ReopenContainerLog (that is CRI's);
//   - copy-truncate by the agent loses the lines written between the copy
//     and the truncation, and writes every line twice to the SD card;
//   - the agent reading the output FIFOs itself stalls every container
//     (its pipe fills in 64 KiB) while the agent is down or restarting.
//
// The driver is a child of the shim, so it keeps writing and rotating
// while the agent is stopped, restarted or upgraded, and a restarted agent
// has nothing to re-attach. It costs a small process per running
// container: about 1 MB of private memory as edge-logdriver, whose binary
// holds nothing but this package, 3.7 MB when the agent's binary runs it
// (what its packages' initialisation allocates stays on the heap).
//
// It never blocks the container on the disk: a reader per stream moves
// output into a bounded buffer (driverBuffer), a writer empties it; when a
// slow or failing disk lets the buffer fill, whole lines are dropped and a
// marker line says how many bytes. It must never exit while the container
// runs (the container would get EPIPE), so write errors only drop lines,
// and SIGTERM (the shim deleting the task) only bounds how long it drains
// what is left.

// DriverFlag is the flag that marks a log driver's command line; its
// value is the log path.
const DriverFlag = "--edge-log-driver"

const (
	driverBuffer = 1 << 20  // output held in memory while the disk is slow
	maxLogLine   = 16 << 10 // a line longer than this is written in pieces
	// partialLineWait: output without a line end (a prompt) is written once
	// the stream has been quiet this long.
	partialLineWait = 250 * time.Millisecond
	// driverStopGrace bounds the drain after SIGTERM (the shim kills
	// the driver after 12 s).
	driverStopGrace = 5 * time.Second
)

// DriverArgs are the arguments that make the shim run the log driver
// for the log at path. The shim passes them in random order (they are a
// URI's query): flag pairs, each name with its value.
func DriverArgs(path string, maxSize int64, maxFiles int) map[string]string {
	return map[string]string{
		DriverFlag:    path,
		"--max-size":  strconv.FormatInt(maxSize, 10),
		"--max-files": strconv.Itoa(maxFiles),
	}
}

// IsDriver reports whether a command line (without the program name)
// is the log driver's: the agent's main runs RunDriver then (the
// fallback when edge-logdriver is not installed beside it).
func IsDriver(args []string) bool { return slices.Contains(args, DriverFlag) }

// RunDriver is the log driver process; it returns the exit status.
func RunDriver(args []string) int {
	fs := flag.NewFlagSet("edge-logdriver", flag.ContinueOnError)
	path := fs.String(DriverFlag[2:], "", "log file")
	maxSize := fs.Int64("max-size", DefaultMaxSize, "rotate at this size")
	maxFiles := fs.Int("max-files", DefaultMaxFiles, "files kept, the live one included")
	if err := fs.Parse(args); err != nil || *path == "" {
		fmt.Fprintln(os.Stderr, "edge-logdriver: containerd's shim runs it for a container's output (a binary:// log URI)")
		return 2
	}
	runtime.GOMAXPROCS(1)
	debug.SetGCPercent(50)
	debug.FreeOSMemory() // what package initialisation left behind (the agent's binary)
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	var streams []*os.File
	for fd, name := range []string{3: "stdout", 4: "stderr"} {
		if name == "" {
			continue
		}
		// Non-blocking, the runtime polls it: reads can time out (partialLineWait).
		unix.SetNonblock(fd, true)
		streams = append(streams, os.NewFile(uintptr(fd), name))
	}
	ready := func() {
		w := os.NewFile(5, "ready")
		w.Write([]byte{0})
		w.Close()
	}
	d := &driver{path: *path, maxSize: *maxSize, maxFiles: *maxFiles, bufferMax: driverBuffer, partialWait: partialLineWait, stopGrace: driverStopGrace}
	sigs := make(chan struct{})
	go func() { <-stop; close(sigs) }()
	d.run(streams, ready, sigs)
	return 0
}

// driver moves output from streams into a log file (see above).
type driver struct {
	path        string
	maxSize     int64
	maxFiles    int
	bufferMax   int
	partialWait time.Duration
	stopGrace   time.Duration

	mu      sync.Mutex
	queue   [][]byte
	queued  int
	dropped int64
	wake    chan struct{}
	buf     []byte // writer only
}

// run copies until every stream ends, or until d.stopGrace after stop.
func (d *driver) run(streams []*os.File, ready func(), stop <-chan struct{}) {
	d.wake = make(chan struct{}, 1)
	var wg sync.WaitGroup
	for _, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.read(s)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	if ready != nil {
		ready() // the container may start: its output is read from now on
	}
	// The driver of the task before (a restart) may still be draining:
	// one writer per log. Output waits in the buffer meanwhile.
	if lock, err := os.OpenFile(d.path+".lock", os.O_RDWR|os.O_CREATE, 0o600); err == nil {
		defer lock.Close()
		unix.Flock(int(lock.Fd()), unix.LOCK_EX)
	}
	out, _ := OpenFile(d.path, d.maxSize, d.maxFiles) // on error, every write tries again
	defer out.Close()
	var deadline <-chan time.Time
	for {
		select {
		case <-d.wake:
			d.flush(out)
		case <-done:
			d.finish(out)
			return
		case <-stop:
			stop, deadline = nil, time.After(d.stopGrace)
		case <-deadline:
			d.finish(out)
			return
		}
	}
}

// read moves what s delivers into the buffer, a line or more at a time.
func (d *driver) read(s *os.File) {
	buf := make([]byte, 32<<10)
	var partial []byte // the start of a line
	for {
		if len(partial) > 0 {
			s.SetReadDeadline(time.Now().Add(d.partialWait))
		} else {
			s.SetReadDeadline(time.Time{})
		}
		n, err := s.Read(buf)
		if n > 0 {
			data := append(partial, buf[:n]...)
			partial = nil
			if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
				d.put(data[:i+1])
				if i+1 < len(data) {
					partial = bytes.Clone(data[i+1:])
				}
			} else {
				partial = data
			}
			if len(partial) >= maxLogLine {
				d.put(partial)
				partial = nil
			}
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			d.put(partial)
			partial = nil
			continue
		}
		if err != nil {
			if len(partial) > 0 {
				d.put(partial)
			}
			return
		}
	}
}

// put queues rec for the writer, or drops it if the buffer is full.
func (d *driver) put(rec []byte) {
	if len(rec) == 0 {
		return
	}
	d.mu.Lock()
	if d.queued+len(rec) > d.bufferMax {
		d.dropped += int64(len(rec))
		d.mu.Unlock()
		return
	}
	d.markDropped()
	d.queue = append(d.queue, rec)
	d.queued += len(rec)
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// markDropped queues a line saying how much was dropped since the last
// one; the caller holds d.mu.
func (d *driver) markDropped() {
	if d.dropped == 0 {
		return
	}
	m := fmt.Appendf(nil, "[edge log driver: %d bytes of output dropped: the log was not written fast enough]\n", d.dropped)
	d.queue = append(d.queue, m)
	d.queued += len(m)
	d.dropped = 0
}

// flush writes what is queued, in one write when it can.
func (d *driver) flush(out *File) {
	d.mu.Lock()
	q := d.queue
	d.queue, d.queued = nil, 0
	d.mu.Unlock()
	d.buf = d.buf[:0]
	for _, r := range q {
		d.buf = append(d.buf, r...)
	}
	if len(d.buf) > 0 {
		if n, err := out.Write(d.buf); err != nil {
			d.mu.Lock()
			d.dropped += int64(len(d.buf) - n)
			d.mu.Unlock()
		}
	}
	if cap(d.buf) > 4*maxLogLine {
		d.buf = nil // a burst's buffer goes back to the heap
	}
}

// finish writes what is left, and how much was dropped at the end.
func (d *driver) finish(out *File) {
	d.flush(out)
	d.mu.Lock()
	d.markDropped()
	d.mu.Unlock()
	d.flush(out)
}
