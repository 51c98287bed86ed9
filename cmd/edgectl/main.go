// Command edgectl drives a cluster from a gateway or laptop, with kubectl's
// habits: apply, get, describe, delete, logs, cordon, drain, ...
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/core"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errUsage) && !errors.Is(err, errDiffer) {
			fmt.Fprintln(os.Stderr, "error:", api.ErrorString(err))
		}
		os.Exit(ExitCode(err))
	}
}

var errUsage = errors.New("usage")

// exitError gives an error an exit status other than 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// ExitCode returns the exit status for Run's error: 0 for none, 1 unless
// the command says otherwise (diff: 1 means differences, errors are 2).
func ExitCode(err error) int {
	var e *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &e):
		return e.code
	}
	return 1
}

const usage = `edgectl controls an edge cluster.

Usage: edgectl [--config FILE] [--server URL] [--token TOKEN] COMMAND [args]

Commands:
  apply -f FILE|DIR|- [--dry-run=none|client|server]
                               create or update objects from manifests; a dry
                               run prints what apply would do and changes nothing
  diff -f FILE|DIR|-           show what apply would change (exit 0: nothing, 1: changes)
  get KIND [NAME] [-o table|wide|json|yaml] [-w] [-n NS | -A] [-l k=v]
  describe KIND NAME           show an object in detail
  delete KIND NAME | -f FILE   delete objects
  logs POD [-c C] [-f] [--tail N]
  cordon|uncordon|drain NODE
  taint NODE KEY[=VALUE]:EFFECT[-]
  rollout status|history|undo deployment/NAME [--to-revision N]
  image import FILE.tar|DIR [--name REF]
                               store an image archive (OCI layout, docker save)
                               on the master, pinned
  image ls | rm REF            list (with the nodes holding each) or remove images
  image prefetch IMAGE [-l k=v] [--timeout 5m]
                               have nodes pull an image before a rollout
  token create [--ttl 24h]     make a join token for new nodes
  token ls | rm ID             list join tokens, revoke one (at once)
  token rotate-admin           replace the admin token (updates this config)
  discover                     list masters advertised on the LAN (mDNS)
  version

KIND: nodes|node|no, pods|pod|po, deployments|deploy, daemonsets|ds,
services|svc, namespaces|ns.
Config: --config, else $EDGECONFIG, else ~/.edge/config (admin.conf format).
`

// globals are the flags every command takes.
type globals struct {
	config, server, token string
	namespace             string
	allNamespaces         bool
}

func addGlobals(fs *pflag.FlagSet, g *globals) {
	fs.StringVar(&g.config, "config", "", "config file (default $EDGECONFIG or ~/.edge/config)")
	fs.StringVar(&g.server, "server", "", "master API URL, overrides the config")
	fs.StringVar(&g.token, "token", "", "admin token, overrides the config")
	fs.StringVarP(&g.namespace, "namespace", "n", "", "namespace (default \"default\")")
	fs.BoolVarP(&g.allNamespaces, "all-namespaces", "A", false, "all namespaces")
}

func (g *globals) ns() string {
	if g.allNamespaces {
		return ""
	}
	if g.namespace == "" {
		return core.DefaultNamespace
	}
	return g.namespace
}

// masterAdminConf is where edgectl looks on the master itself.
const masterAdminConf = "/var/lib/edge/master/admin.conf"

// client builds an API client from the config file and overrides.
func (g *globals) client() (*api.Client, error) {
	cl, _, err := g.clientAndConfig()
	return cl, err
}

// clientAndConfig is client that also says which config file it read ("" if
// none), for commands that write it back.
func (g *globals) clientAndConfig() (*api.Client, string, error) {
	path := g.config
	if path == "" {
		path = os.Getenv("EDGECONFIG")
	}
	explicit := path != ""
	if path == "" {
		if home, err := os.UserHomeDir(); err == nil {
			path = filepath.Join(home, ".edge", "config")
		}
	}
	cfg, err := api.LoadConfig(path)
	if err != nil && !explicit {
		// On the master itself, as k3s does, fall back to the admin config.
		if c2, err2 := api.LoadConfig(masterAdminConf); err2 == nil {
			cfg, err, path = c2, nil, masterAdminConf
		}
	}
	read := path
	if err != nil {
		read = ""
		if g.server == "" {
			if explicit {
				return nil, "", fmt.Errorf("read config: %v", err)
			}
			return nil, "", fmt.Errorf("no config found at %s: pass --config DATA_DIR/admin.conf (from the master), set EDGECONFIG, or give --server and --token", path)
		}
		cfg = &api.Config{}
	}
	if g.server != "" {
		cfg.Server = g.server
	}
	if g.token != "" {
		cfg.Token = g.token
	}
	if cfg.Server == "" {
		return nil, "", fmt.Errorf("%s has no server: add 'server: https://HOST:7443' or pass --server", path)
	}
	caPEM, err := cfg.CAPEM()
	if err != nil {
		return nil, "", fmt.Errorf("%s: %v", path, err)
	}
	if len(caPEM) == 0 {
		return nil, "", fmt.Errorf("%s has no certificate-authority-data: copy admin.conf from the master's data dir", path)
	}
	tlsConfig, err := api.CATLS(caPEM)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %v", path, err)
	}
	return api.NewClient(cfg.Server, cfg.Token, tlsConfig), read, nil
}

// Run executes one edgectl command.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	// The verb is the first argument that is not a flag or a flag's value.
	verb, rest := "", args
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			verb, rest = a, append(append([]string{}, args[:i]...), args[i+1:]...)
			break
		}
		if !strings.Contains(a, "=") && (a == "--config" || a == "--server" || a == "--token" || a == "-n" || a == "--namespace") {
			i++
		}
	}
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr}
	switch verb {
	case "apply":
		return c.apply(ctx, rest)
	case "diff":
		// Like kubectl diff and diff(1): 1 says "differences", so errors are 2.
		err := c.diff(ctx, rest)
		if err != nil && !errors.Is(err, errDiffer) {
			err = &exitError{code: 2, err: err}
		}
		return err
	case "get":
		return c.get(ctx, rest)
	case "describe":
		return c.describe(ctx, rest)
	case "delete":
		return c.delete(ctx, rest)
	case "logs", "log":
		return c.logs(ctx, rest)
	case "cordon", "uncordon", "drain":
		return c.nodeAction(ctx, verb, rest)
	case "taint":
		return c.taint(ctx, rest)
	case "rollout":
		return c.rollout(ctx, rest)
	case "image", "images":
		return c.image(ctx, rest)
	case "token":
		return c.tokenCmd(ctx, rest)
	case "discover":
		return c.discover(ctx, rest)
	case "version":
		return c.version(ctx, rest)
	case "", "help":
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || verb == "help") {
			fmt.Fprint(stdout, usage)
			return nil
		}
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	fmt.Fprintf(stderr, "error: unknown command %q\n\n%s", verb, usage)
	return errUsage
}

type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// flags parses a command's flags; help goes to stdout.
func (c *cli) flags(name string, args []string, g *globals, define func(fs *pflag.FlagSet)) (*pflag.FlagSet, error) {
	fs := pflag.NewFlagSet("edgectl "+name, pflag.ContinueOnError)
	fs.SetOutput(c.stderr)
	addGlobals(fs, g)
	if define != nil {
		define(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, errUsage
		}
		return nil, err
	}
	return fs, nil
}
