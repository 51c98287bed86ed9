package main

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/core"
)

const imageUsage = `usage: edgectl image import FILE.tar|FILE.tar.gz|DIR [--name REPO[:TAG]]
       edgectl image ls [-o table|wide|json]
       edgectl image rm REF...
       edgectl image prefetch IMAGE [-l k=v] [--timeout 5m] [--no-wait]`

func (c *cli) image(ctx context.Context, args []string) error {
	// The subcommand is the first argument that is not a flag or a flag's
	// value.
	sub, rest := "", args
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			sub, rest = a, append(append([]string{}, args[:i]...), args[i+1:]...)
			break
		}
		switch a {
		case "--config", "--server", "--token", "-n", "--namespace", "-o", "--output", "--name", "-l", "--selector", "--timeout", "--poll":
			i++
		}
	}
	switch sub {
	case "import", "load":
		return c.imageImport(ctx, rest)
	case "ls", "list":
		return c.imageList(ctx, rest)
	case "rm", "remove", "delete":
		return c.imageRemove(ctx, rest)
	case "prefetch", "pull":
		return c.imagePrefetch(ctx, rest)
	}
	return fmt.Errorf("%s", imageUsage)
}

func (c *cli) imageImport(ctx context.Context, args []string) error {
	var g globals
	var name string
	fs, err := c.flags("image import", args, &g, func(fs *pflag.FlagSet) {
		fs.StringVar(&name, "name", "", "reference for an image the archive does not name (an OCI layout without org.opencontainers.image.ref.name, a docker save by image ID)")
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%s", imageUsage)
	}
	path := fs.Arg(0)
	cl, err := g.client()
	if err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	var body io.Reader
	var total int64
	if fi.IsDir() {
		if total, err = tarSize(path); err != nil {
			return err
		}
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(writeTarDir(pw, path)) }()
		defer pr.Close()
		body = pr
	} else {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		body, total = f, fi.Size()
	}
	prog := c.progress(filepath.Base(path), total)
	contentLength := total
	if fi.IsDir() {
		contentLength = -1 // an estimate: sent chunked
	}
	res, err := cl.ImportImages(ctx, io.TeeReader(body, prog), contentLength, name)
	prog.Close()
	if err != nil {
		return err
	}
	for _, img := range res.Images {
		fmt.Fprintf(c.stdout, "imported %s %s (%s, pinned)\n", img.Ref, img.Digest, humanSize(img.Size))
	}
	fmt.Fprintf(c.stdout, "%d images, %d new blobs, %s read\n", len(res.Images), res.Blobs, humanSize(res.Bytes))
	return nil
}

// progressWriter counts the bytes of an upload: a bar on a terminal, a
// line every tenth otherwise.
type progressWriter struct {
	bar        *progressbar.ProgressBar
	w          io.Writer
	what       string
	total, n   int64
	lastTenths int64
}

func (c *cli) progress(what string, total int64) *progressWriter {
	p := &progressWriter{w: c.stderr, what: what, total: total, lastTenths: -1}
	if f, ok := c.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(f), progressbar.OptionSetDescription("importing "+what),
			progressbar.OptionShowBytes(true), progressbar.OptionShowCount(), progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionOnCompletion(func() { fmt.Fprintln(f) }),
			progressbar.OptionClearOnFinish())
	}
	return p
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if p.bar != nil {
		p.bar.Add64(int64(len(b)))
		return len(b), nil
	}
	if p.total > 0 {
		if tenths := min(p.n*10/p.total, 10); tenths != p.lastTenths {
			p.lastTenths = tenths
			fmt.Fprintf(p.w, "importing %s: sent %s of %s (%d%%)\n", p.what, humanSize(p.n), humanSize(p.total), tenths*10)
		}
	}
	return len(b), nil
}

func (p *progressWriter) Close() {
	if p.bar != nil {
		p.bar.Finish()
		return
	}
	if p.lastTenths != 10 {
		fmt.Fprintf(p.w, "importing %s: sent %s\n", p.what, humanSize(p.n))
		p.lastTenths = 10
	}
}

// writeTarDir writes dir (an OCI image layout, or an unpacked docker
// save) as a tar with paths relative to it; symlinks are sent as they are
// (the master refuses those that point out of the tree).
func writeTarDir(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		} else if !fi.Mode().IsRegular() && !fi.IsDir() {
			return fmt.Errorf("%s is not a file, directory or symlink", p)
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			h.Name += "/"
		}
		h.Uname, h.Gname, h.Uid, h.Gid = "", "", 0, 0
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// tarSize estimates the size of writeTarDir's output (for the progress
// bar: long names add headers it does not count).
func tarSize(dir string) (int64, error) {
	n := int64(1024)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n += 512
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += (fi.Size() + 511) / 512 * 512
		}
		return nil
	})
	return n, err
}

func (c *cli) imageList(ctx context.Context, args []string) error {
	var g globals
	var output string
	_, err := c.flags("image ls", args, &g, func(fs *pflag.FlagSet) {
		fs.StringVarP(&output, "output", "o", "table", "table, wide or json")
	})
	if err != nil {
		return err
	}
	cl, err := g.client()
	if err != nil {
		return err
	}
	imgs, err := cl.Images(ctx)
	if err != nil {
		return err
	}
	switch output {
	case "json", "yaml":
		return c.printStructured(map[string]any{"items": imgs}, output)
	case "table", "wide":
	default:
		return fmt.Errorf("unknown output format %q: use table, wide or json", output)
	}
	t := &table{header: []string{"REFERENCE", "DIGEST", "SIZE", "PINNED", "NODES"}}
	if output == "wide" {
		t.header = append(t.header, "LAST-USED")
	}
	for _, img := range imgs {
		d := img.Digest
		if output != "wide" && len(d) > 19 {
			d = d[:19]
		}
		nodes := strings.Join(img.Nodes, ",")
		if nodes == "" {
			nodes = "<none>"
		}
		row := []string{img.Ref, d, humanSize(img.Size), fmt.Sprint(img.Pinned), nodes}
		if output == "wide" {
			lu := "<never>"
			if img.LastUsed != nil {
				lu = img.LastUsed.Time.UTC().Format(time.RFC3339)
			}
			row = append(row, lu)
		}
		t.rows = append(t.rows, row)
	}
	if len(t.rows) == 0 {
		fmt.Fprintln(c.stderr, "No images on the master (edgectl image import FILE.tar adds some).")
		return nil
	}
	t.print(c.stdout, true)
	return nil
}

func (c *cli) imageRemove(ctx context.Context, args []string) error {
	var g globals
	fs, err := c.flags("image rm", args, &g, nil)
	if err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%s", imageUsage)
	}
	cl, err := g.client()
	if err != nil {
		return err
	}
	for _, ref := range fs.Args() {
		if err := cl.RemoveImage(ctx, ref); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "image %s removed (its blobs no other image uses are freed by the next collection)\n", ref)
	}
	return nil
}

func (c *cli) imagePrefetch(ctx context.Context, args []string) error {
	var g globals
	var selector string
	var timeout, poll time.Duration
	var noWait bool
	fs, err := c.flags("image prefetch", args, &g, func(fs *pflag.FlagSet) {
		fs.StringVarP(&selector, "selector", "l", "", "nodes to warm, by label (k=v,...; default all)")
		fs.DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for every node to hold the image")
		fs.DurationVar(&poll, "poll", time.Second, "how often to look at the nodes")
		fs.BoolVar(&noWait, "no-wait", false, "ask the nodes and return at once")
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%s", imageUsage)
	}
	image := fs.Arg(0)
	sel, err := core.ParseSelector(selector)
	if err != nil {
		return err
	}
	cl, err := g.client()
	if err != nil {
		return err
	}
	names, err := cl.Prefetch(ctx, image, sel)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s: prefetching on %d nodes: %s\n", image, len(names), strings.Join(names, ", "))
	if noWait {
		return nil
	}
	return c.waitImage(ctx, cl, image, names, timeout, poll)
}

// waitImage polls the nodes' status until each lists image, printing a
// line as each does.
func (c *cli) waitImage(ctx context.Context, cl *api.Client, image string, names []string, timeout, poll time.Duration) error {
	start := time.Now()
	deadline := start.Add(timeout)
	pending := map[string]bool{}
	for _, n := range names {
		pending[n] = true
	}
	for {
		objs, err := cl.List(ctx, core.KindNode, "", "")
		if err != nil {
			return err
		}
		status := map[string]string{}
		for _, o := range objs {
			n := o.(*core.Node)
			if !pending[n.Metadata.Name] {
				continue
			}
			if n.HasImage(image) {
				delete(pending, n.Metadata.Name)
				fmt.Fprintf(c.stdout, "%s: holds %s (%s)\n", n.Metadata.Name, image, time.Since(start).Round(time.Second))
				continue
			}
			status[n.Metadata.Name] = "Ready=" + n.Ready()
		}
		if len(pending) == 0 {
			fmt.Fprintf(c.stdout, "%s: on all %d nodes\n", image, len(names))
			return nil
		}
		if time.Now().After(deadline) {
			var left []string
			for n := range pending {
				s := status[n]
				if s == "" {
					s = "deleted"
				}
				left = append(left, n+" ("+s+")")
			}
			sort.Strings(left)
			return fmt.Errorf("after %v, %d of %d nodes do not hold %s yet: %s (they keep fetching it; look at edgectl get events, or wait longer with --timeout)",
				timeout, len(left), len(names), image, strings.Join(left, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// humanSize prints bytes as docker does (1.2MB).
func humanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	f, i := float64(n), 0
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.3g%s", f, []string{"B", "kB", "MB", "GB", "TB"}[i])
}
