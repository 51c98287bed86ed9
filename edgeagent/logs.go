package edgeagent

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	"github.com/edgeorch/edge/core"
)

// Logs writes a container's log to w: the last req.Tail lines (all if
// negative), then, with req.Follow, what it writes next until ctx ends or
// the pod goes.
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
	f, err := os.Open(worker.logPath(req.Container))
	if errors.Is(err, os.ErrNotExist) {
		if !req.Follow {
			return nil // not started yet: nothing logged
		}
	} else if err != nil {
		return err
	}
	var off int64
	if f != nil {
		defer f.Close()
		if off, err = tailOffset(f, req.Tail); err != nil {
			return err
		}
		if off, err = copyFrom(f, off, w); err != nil {
			return err
		}
	}
	if !req.Follow {
		return nil
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.ctx.Done():
			return nil
		case <-t.C:
		}
		if worker.isFinished() {
			return nil
		}
		if f == nil {
			if f, err = os.Open(worker.logPath(req.Container)); err != nil {
				f = nil
				continue
			}
			defer f.Close()
		}
		if st, err := f.Stat(); err == nil && st.Size() < off {
			off = 0 // truncated
		}
		if off, err = copyFrom(f, off, w); err != nil {
			return err
		}
	}
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

// tailOffset returns where the last n lines of f start (0 for n < 0).
func tailOffset(f *os.File, n int) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	if n < 0 {
		return 0, nil
	}
	if n == 0 {
		return size, nil
	}
	end := size
	// A final newline ends the last line; it does not start an empty one.
	if end > 0 {
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, end-1); err == nil && b[0] == '\n' {
			end--
		}
	}
	pos := end
	buf := make([]byte, 32<<10)
	found := 0
	for pos > 0 {
		chunk := int64(len(buf))
		if pos < chunk {
			chunk = pos
		}
		pos -= chunk
		if _, err := f.ReadAt(buf[:chunk], pos); err != nil && err != io.EOF {
			return 0, err
		}
		for i := chunk - 1; i >= 0; i-- {
			if buf[i] == '\n' {
				found++
				if found == n {
					return pos + i + 1, nil
				}
			}
		}
	}
	return 0, nil
}
