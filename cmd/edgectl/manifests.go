package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/core"
	"github.com/spf13/pflag"
)

// readManifests reads -f arguments: files, directories (their .yaml, .yml
// and .json files) or - for stdin.
func (c *cli) readManifests(paths []string) ([]core.ManifestFile, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("-f is required: a file, a directory or - for stdin")
	}
	var files []core.ManifestFile
	for _, p := range paths {
		if p == "-" {
			b, err := io.ReadAll(c.stdin)
			if err != nil {
				return nil, fmt.Errorf("read stdin: %v", err)
			}
			files = append(files, core.ManifestFile{Name: "<stdin>", Data: b})
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", p, unwrapPath(err))
		}
		if !st.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			files = append(files, core.ManifestFile{Name: p, Data: b})
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		n := 0
		for _, e := range entries {
			ext := filepath.Ext(e.Name())
			if e.IsDir() || (ext != ".yaml" && ext != ".yml" && ext != ".json") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(p, e.Name()))
			if err != nil {
				return nil, err
			}
			files = append(files, core.ManifestFile{Name: filepath.Join(p, e.Name()), Data: b})
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("%s: no .yaml, .yml or .json files", p)
		}
	}
	return files, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (c *cli) apply(ctx context.Context, args []string) error {
	var g globals
	var paths []string
	var dryRun string
	fs, err := c.flags("apply", args, &g, func(fs *pflag.FlagSet) {
		fs.StringArrayVarP(&paths, "filename", "f", nil, "manifest file, directory or -")
		fs.StringVar(&dryRun, "dry-run", "none", `"client": check locally against the live objects, "server": run the apply on the master and roll it back; nothing changes either way`)
		fs.Lookup("dry-run").NoOptDefVal = core.DryRunClient // bare --dry-run, as old kubectl
	})
	if err != nil {
		return err
	}
	mode, err := parseDryRun(dryRun)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		if fs.Changed("dry-run") && dryRun == core.DryRunClient && slices.Contains([]string{"none", "client", "server"}, fs.Arg(0)) {
			return fmt.Errorf("write --dry-run=%s (with =): a bare --dry-run means client", fs.Arg(0))
		}
		return fmt.Errorf("apply takes manifests with -f, not arguments %q", fs.Args())
	}
	files, err := c.readManifests(paths)
	if err != nil {
		return err
	}
	// Decode locally first: a bad manifest fails fast, even offline.
	objs, err := core.DecodeManifests(files)
	if err != nil {
		return err
	}
	if mode == core.DryRunClient {
		return c.applyClientDryRun(ctx, &g, objs)
	}
	cl, err := g.client()
	if err != nil {
		return err
	}
	var results []core.ApplyResult
	if mode == core.DryRunServer {
		results, err = cl.ApplyDryRun(ctx, files)
	} else {
		results, err = cl.Apply(ctx, files)
	}
	if err != nil {
		return err
	}
	c.printResults(results)
	return nil
}

// parseDryRun reads --dry-run as kubectl does: none, client or server
// (true and false are kubectl's old spellings of client and none). It
// returns "" for none.
func parseDryRun(v string) (string, error) {
	switch v {
	case "none", "false":
		return "", nil
	case core.DryRunClient, "true":
		return core.DryRunClient, nil
	case core.DryRunServer:
		return core.DryRunServer, nil
	}
	return "", fmt.Errorf("--dry-run=%s: use none, client or server", v)
}

// applyClientDryRun compares objs with the live objects when the master
// answers, and with an empty cluster (saying so) when it does not.
func (c *cli) applyClientDryRun(ctx context.Context, g *globals, objs []core.Object) error {
	cl, err := g.client()
	var results []core.ApplyResult
	if err == nil {
		results, err = core.DryRunLocal(ctx, objs, func(k core.Key) (core.Object, error) { return cl.Get(ctx, k) })
		if core.ErrorCode(err) != core.EUNAVAILABLE {
			if err != nil {
				return err
			}
			c.printResults(results)
			return nil
		}
	}
	fmt.Fprintf(c.stderr, "Warning: no live objects to compare with (%s): every object is shown as created\n", api.ErrorString(err))
	if results, err = core.DryRunLocal(ctx, objs, nil); err != nil {
		return err
	}
	c.printResults(results)
	return nil
}

// printResults prints apply results to stdout and their warnings to stderr.
func (c *cli) printResults(results []core.ApplyResult) {
	for _, r := range results {
		fmt.Fprintln(c.stdout, r.String())
		c.printWarnings(r)
	}
}

func (c *cli) printWarnings(r core.ApplyResult) {
	for _, w := range r.Warnings {
		fmt.Fprintf(c.stderr, "Warning: %s/%s: %s\n", strings.ToLower(string(r.Kind)), r.Name, w)
	}
}

// errDiffer is diff's "differences found": exit status 1, nothing printed.
var errDiffer = errors.New("differences found")

// diff prints what applying the manifests would change, as kubectl diff:
// exit status 0 for no differences, 1 for some, 2 for an error.
func (c *cli) diff(ctx context.Context, args []string) error {
	var g globals
	var paths []string
	fs, err := c.flags("diff", args, &g, func(fs *pflag.FlagSet) {
		fs.StringArrayVarP(&paths, "filename", "f", nil, "manifest file, directory or -")
	})
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("diff takes manifests with -f, not arguments %q", fs.Args())
	}
	files, err := c.readManifests(paths)
	if err != nil {
		return err
	}
	if _, err := core.DecodeManifests(files); err != nil {
		return err
	}
	cl, err := g.client()
	if err != nil {
		return err
	}
	changes, err := cl.DryRunChanges(ctx, files)
	if err != nil {
		return err
	}
	out := &terminalSafe{w: c.stdout}
	differ := false
	for _, ch := range changes {
		d, err := core.Diff(ch.Live, ch.Merged)
		if err != nil {
			return err
		}
		if d != "" {
			differ = true
			if _, err := io.WriteString(out, d); err != nil {
				return err
			}
		}
		c.printWarnings(ch.ApplyResult)
	}
	if differ {
		return errDiffer
	}
	return nil
}

func (c *cli) delete(ctx context.Context, args []string) error {
	var g globals
	var paths []string
	fs, err := c.flags("delete", args, &g, func(fs *pflag.FlagSet) {
		fs.StringArrayVarP(&paths, "filename", "f", nil, "delete what these manifests describe")
	})
	if err != nil {
		return err
	}
	cl, err := g.client()
	if err != nil {
		return err
	}
	var results []core.ApplyResult
	var failed error
	if len(paths) > 0 {
		files, err := c.readManifests(paths)
		if err != nil {
			return err
		}
		results, failed = cl.DeleteManifests(ctx, files) // some may be deleted, some not
	} else {
		if fs.NArg() < 2 {
			return fmt.Errorf("usage: edgectl delete KIND NAME... or edgectl delete -f FILE")
		}
		kind, err := core.ParseKind(fs.Arg(0))
		if err != nil {
			return err
		}
		for _, name := range fs.Args()[1:] {
			r, err := cl.Delete(ctx, core.Key{Kind: kind, Namespace: nsFor(kind, g.ns()), Name: name})
			if err != nil {
				return err
			}
			results = append(results, r...)
		}
	}
	for _, r := range results {
		fmt.Fprintf(c.stdout, "%s \"%s\" deleted\n", strings.ToLower(string(r.Kind)), r.Name)
	}
	return failed
}
