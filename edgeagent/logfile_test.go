package edgeagent

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edge/internal/logrotate"
	"github.com/edgeorch/edge/internal/logrotate/logtest"
)

var (
	logLines        = logtest.Lines
	checkContiguous = logtest.CheckContiguous
)

// readAllLogs returns the log at path across its files, with the files'
// names and sizes.
func readAllLogs(t *testing.T, path string) (string, []string, []int64) {
	t.Helper()
	files, err := logrotate.OpenFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	defer logrotate.CloseAll(files)
	return logtest.ReadFiles(t, files)
}

func TestLogTailAcrossFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	l, err := logrotate.OpenFile(path, 50, 5)
	if err != nil {
		t.Fatal(err)
	}
	l.Write([]byte(logLines(0, 40))) // "line N\n": 7 or 8 bytes, 6 lines a file
	l.Close()
	all, names, _ := readAllLogs(t, path)
	first := checkContiguous(t, all, 40)
	if len(names) != 5 {
		t.Fatalf("files %v", names)
	}
	for _, tail := range []int{0, 1, 3, 6, 7, 13, 40 - first, 100, -1} {
		var got bytes.Buffer
		err := streamLog(context.Background(), context.Background(), path, tail, false, nil, func(b []byte) error { got.Write(b); return nil })
		if err != nil {
			t.Fatal(err)
		}
		want := logLines(max(first, 40-tail), 40)
		if tail < 0 {
			want = logLines(first, 40)
		}
		if got.String() != want {
			t.Errorf("tail %d = %q, want %q", tail, got.String(), want)
		}
	}
	// No log yet: nothing, no error.
	err = streamLog(context.Background(), context.Background(), filepath.Join(t.TempDir(), "none.log"), 10, false, nil, func([]byte) error { t.Fatal("output"); return nil })
	if err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a bytes.Buffer for one writer and one reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Write(p)
	return nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLogFollowAcrossRotation(t *testing.T) {
	old := logPoll
	logPoll = 5 * time.Millisecond
	t.Cleanup(func() { logPoll = old })
	path := filepath.Join(t.TempDir(), "app.log")
	l, err := logrotate.OpenFile(path, 200, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Write([]byte(logLines(0, 100))) // rotated many times before the reader starts
	all, _, _ := readAllLogs(t, path)
	first := checkContiguous(t, all, 100)

	ctx, cancel := context.WithCancel(context.Background())
	var got syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- streamLog(ctx, context.Background(), path, -1, true, func() bool { return false }, got.Write)
	}()
	waitLogged := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.HasSuffix(got.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("the follower has not read %q; it has %q", want, got.String())
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitLogged("line 99\n")
	// Chunks of up to two rotations (the reader is behind by at most that
	// when it looks), waiting for the reader each time.
	n := 100
	for _, k := range []int{1, 5, 30, 2, 40, 50, 1, 25, 60, 3} {
		l.Write([]byte(logLines(n, n+k)))
		n += k
		waitLogged(fmt.Sprintf("line %d\n", n-1))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if f := checkContiguous(t, got.String(), n); f != first {
		t.Fatalf("followed from line %d, want %d", f, first)
	}
}

// TestLogFollowFromNothing follows a log that does not exist yet and whose
// first writes rotate before the reader looks.
func TestLogFollowFromNothing(t *testing.T) {
	old := logPoll
	logPoll = 5 * time.Millisecond
	t.Cleanup(func() { logPoll = old })
	path := filepath.Join(t.TempDir(), "app.log")
	ctx, cancel := context.WithCancel(context.Background())
	var got syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- streamLog(ctx, context.Background(), path, 10, true, func() bool { return false }, got.Write)
	}()
	l, err := logrotate.OpenFile(path, 100, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Write([]byte(logLines(0, 30)))
	deadline := time.Now().Add(10 * time.Second)
	for !strings.HasSuffix(got.String(), "line 29\n") && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	checkContiguous(t, got.String(), 30)
}
