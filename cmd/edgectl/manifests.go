package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

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
	fs, err := c.flags("apply", args, &g, func(fs *pflag.FlagSet) {
		fs.StringArrayVarP(&paths, "filename", "f", nil, "manifest file, directory or -")
	})
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("apply takes manifests with -f, not arguments %q", fs.Args())
	}
	files, err := c.readManifests(paths)
	if err != nil {
		return err
	}
	// Decode locally first: a bad manifest fails fast, even offline.
	if _, err := core.DecodeManifests(files); err != nil {
		return err
	}
	cl, err := g.client()
	if err != nil {
		return err
	}
	results, err := cl.Apply(ctx, files)
	if err != nil {
		return err
	}
	for _, r := range results {
		fmt.Fprintln(c.stdout, r.String())
		for _, w := range r.Warnings {
			fmt.Fprintf(c.stderr, "Warning: %s/%s: %s\n", strings.ToLower(string(r.Kind)), r.Name, w)
		}
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
