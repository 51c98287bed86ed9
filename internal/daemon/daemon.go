// Package daemon is the process frame edgemaster and edgeagent share:
// flags, signals, logging and GC tuning. It holds no behaviour of either
// program.
//
// It does not page its own code out (madvise(MADV_PAGEOUT)), as it once
// did every minute: that lowered RSS by clean file pages the kernel
// reclaims under pressure anyway, and made an idle agent read about 31,000
// pages an hour back from the SD card (master 16,000; 0 without it),
// measured with make bench.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/pflag"
)

// Program is a long-running command.
type Program interface {
	ParseFlags(args []string) error
	// Run starts everything and returns once it serves.
	Run(ctx context.Context) error
	// Close stops everything; it is idempotent.
	Close() error
}

// ErrDone from Run means the program did a one-off job (such as a
// cleanup) and exits 0 without serving.
var ErrDone = errors.New("done")

// Main parses the command line, runs p until SIGINT or SIGTERM (a second
// signal kills at once) and closes it. It exits 2 on bad flags and 1 when p
// fails.
func Main(name string, p Program, stopping string) {
	if os.Getenv("GOGC") == "" {
		// Edge nodes are short of memory, not of CPU: collect garbage sooner.
		debug.SetGCPercent(50)
	}
	if err := p.ParseFlags(os.Args[1:]); errors.Is(err, pflag.ErrHelp) {
		os.Exit(0)
	} else if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	if err := p.Run(ctx); errors.Is(err, ErrDone) {
		p.Close()
		os.Exit(0)
	} else if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		p.Close()
		os.Exit(1)
	}
	<-ctx.Done()
	stop() // from here a second signal kills at once
	slog.Info(stopping)
	if err := p.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// Logger returns a text logger on stderr, installed as the default.
func Logger(debugLogs bool, attrs ...any) *slog.Logger {
	level := slog.LevelInfo
	if debugLogs {
		level = slog.LevelDebug
	}
	l := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With(attrs...)
	slog.SetDefault(l)
	return l
}

// ServeProfiles serves net/http/pprof on addr (loopback, for a developer on
// the node) until ctx ends; "" serves nothing.
func ServeProfiles(ctx context.Context, addr string, log *slog.Logger) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--pprof-addr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--pprof-addr %q: profiles are served on a loopback address only", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	log.Info("serving profiles", "addr", ln.Addr().String())
	return nil
}
