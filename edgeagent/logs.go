package edgeagent

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/internal/logrotate"
)

// Default caps of each container's log, the kubelet's.
const (
	DefaultContainerLogMaxSize  = logrotate.DefaultMaxSize
	DefaultContainerLogMaxFiles = logrotate.DefaultMaxFiles
)

// IsLogDriver reports whether a command line (without the program name) is
// the one containerd's shim gives the log driver (logrotate.RunDriver):
// the agent's binary serves as its own log driver when edge-logdriver is
// not installed beside it.
func IsLogDriver(args []string) bool { return logrotate.IsDriver(args) }

// RunLogDriver runs the log driver and returns its exit status.
func RunLogDriver(args []string) int { return logrotate.RunDriver(args) }

// FindLogDriver returns the program for Agent.LogDriver: edge-logdriver
// beside the running executable (small is true), else the executable
// itself, which must then run RunLogDriver when IsLogDriver.
func FindLogDriver() (path string, small bool, err error) {
	exe, err := os.Executable()
	if err != nil {
		return "", false, err
	}
	if p := filepath.Join(filepath.Dir(exe), "edge-logdriver"); unix.Access(p, unix.X_OK) == nil {
		return p, true, nil
	}
	return exe, false, nil
}

// Logs writes a container's log to w: the last req.Tail lines (all if
// negative), across its rotated files, then, with req.Follow, what it
// writes next until ctx ends or the pod goes, across rotations.
func (a *Agent) Logs(ctx context.Context, req core.LogRequest, w func([]byte) error) error {
	a.mu.Lock()
	var worker *podWorker
	for _, pw := range a.workers {
		if pw.namespace == req.Namespace && pw.name == req.Pod {
			worker = pw
		}
	}
	a.mu.Unlock()
	if worker == nil {
		return core.Errorf(core.ENOTFOUND, "pod %q is not running on node %q", req.Pod, a.Name)
	}
	worker.mu.Lock()
	pod := worker.pod
	worker.mu.Unlock()
	if pod != nil {
		if findContainer(pod, req.Container) == nil { // init containers' logs too
			return core.Errorf(core.EINVALID, "container %q is not in pod %q", req.Container, req.Pod)
		}
	}
	return streamLog(ctx, a.ctx, worker.logPath(req.Container), req.Tail, req.Follow, worker.isFinished, w)
}

// logPoll is how often a followed log is looked at.
var logPoll = 200 * time.Millisecond

// streamLog writes the log at path to w: the last tail lines (all if
// negative), then, with follow, what is written next until ctx or
// agentCtx ends or finished says the writer has gone.
func streamLog(ctx, agentCtx context.Context, path string, tail int, follow bool, finished func() bool, w func([]byte) error) error {
	files, err := logrotate.OpenFiles(path)
	if err != nil {
		return err
	}
	// f is the file being read, at off; the files before it are closed.
	var f *os.File
	var off int64
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	if len(files) > 0 {
		m, err := logrotate.NewMultiFile(files)
		if err != nil {
			logrotate.CloseAll(files)
			return err
		}
		start, err := logrotate.TailOffset(m, m.Size, tail)
		if err != nil {
			logrotate.CloseAll(files)
			return err
		}
		i, o := m.Locate(start)
		logrotate.CloseAll(files[:i])
		for j, g := range files[i:] {
			if f != nil {
				f.Close()
			}
			f, off = g, 0
			if j == 0 {
				off = o
			}
			if off, err = copyFrom(f, off, w); err != nil {
				logrotate.CloseAll(files[i+j+1:])
				return err
			}
		}
	}
	if !follow {
		return nil
	}
	t := time.NewTicker(logPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-agentCtx.Done():
			return nil
		case <-t.C:
		}
		if finished() {
			return nil
		}
		if f, off, err = followLog(path, f, off, w); err != nil {
			return err
		}
	}
}

// followLog sends what was written to the log at path since f at off, moving
// on to the files after f once f was rotated away (nothing more is
// written to a rotated file: the log driver renames it before it writes
// to the next). It returns the file and offset to go on from.
func followLog(path string, f *os.File, off int64, w func([]byte) error) (*os.File, int64, error) {
	var err error
	if f != nil {
		if st, err := f.Stat(); err == nil && st.Size() < off {
			off = 0 // truncated by hand
		}
		if off, err = copyFrom(f, off, w); err != nil {
			return f, off, err
		}
		if cur, err := os.Stat(path); err != nil {
			return f, off, nil // not there (yet, or between a rename and the new file): look again later
		} else if st, err := f.Stat(); err == nil && os.SameFile(cur, st) {
			return f, off, nil
		}
		// Rotated: f is complete once the new live file exists.
		if off, err = copyFrom(f, off, w); err != nil {
			return f, off, err
		}
	}
	next, err := logrotate.FilesAfter(path, f)
	if err != nil || len(next) == 0 {
		return f, off, err
	}
	if f != nil {
		f.Close()
	}
	for i, g := range next {
		f, off = g, 0
		if off, err = copyFrom(f, off, w); err != nil {
			logrotate.CloseAll(next[i+1:])
			return f, off, err
		}
		if i < len(next)-1 {
			f.Close()
		}
	}
	return f, off, nil
}

// copyFrom sends what f holds after off and returns the new offset.
func copyFrom(f *os.File, off int64, w func([]byte) error) (int64, error) {
	buf := make([]byte, 32<<10)
	for {
		n, err := f.ReadAt(buf, off)
		if n > 0 {
			if werr := w(buf[:n]); werr != nil {
				return off, werr
			}
			off += int64(n)
		}
		if err == io.EOF {
			return off, nil
		} else if err != nil {
			return off, err
		}
	}
}
