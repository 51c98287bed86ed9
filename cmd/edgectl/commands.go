package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/discovery"
	"github.com/edgeorch/edge/internal/fsutil"
	"github.com/edgeorch/edge/internal/version"
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

func nsFor(kind core.Kind, ns string) string {
	if !kind.Namespaced() {
		return ""
	}
	if ns == "" {
		return core.DefaultNamespace
	}
	return ns
}

func (c *cli) get(ctx context.Context, args []string) error {
	var g globals
	var output, selector string
	var watch bool
	fs, err := c.flags("get", args, &g, func(fs *pflag.FlagSet) {
		fs.StringVarP(&output, "output", "o", "table", "table, wide, json, yaml or name")
		fs.BoolVarP(&watch, "watch", "w", false, "after listing, watch for changes")
		fs.StringVarP(&selector, "selector", "l", "", "label selector k=v,...")
	})
	if err != nil {
		return err
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		return fmt.Errorf("usage: edgectl get KIND [NAME] (KIND: nodes, pods, deployments, daemonsets, services, namespaces)")
	}
	kind, err := core.ParseKind(fs.Arg(0))
	if err != nil {
		return err
	}
	switch output {
	case "table", "wide", "json", "yaml", "name":
	default:
		return fmt.Errorf("unknown output format %q: use table, wide, json, yaml or name", output)
	}
	cl, err := g.client()
	if err != nil {
		return err
	}
	name := fs.Arg(1)
	ns := nsFor(kind, g.ns())
	if kind.Namespaced() && g.allNamespaces {
		ns = ""
	}
	if watch {
		return c.watch(ctx, cl, kind, ns, name, selector, output, g.allNamespaces)
	}
	var objs []core.Object
	if name != "" {
		o, err := cl.Get(ctx, core.Key{Kind: kind, Namespace: ns, Name: name})
		if err != nil {
			return err
		}
		objs = []core.Object{o}
	} else if objs, err = cl.List(ctx, kind, ns, selector); err != nil {
		return err
	}
	switch output {
	case "json", "yaml":
		var v any = objs
		if name != "" {
			v = objs[0]
		} else {
			v = map[string]any{"apiVersion": "v1", "kind": "List", "items": objs}
		}
		return c.printStructured(v, output)
	case "name":
		for _, o := range objs {
			fmt.Fprintf(c.stdout, "%s/%s\n", strings.ToLower(string(kind)), o.GetMeta().Name)
		}
		return nil
	}
	if len(objs) == 0 {
		if ns == "" || !kind.Namespaced() {
			fmt.Fprintln(c.stderr, "No resources found")
		} else {
			fmt.Fprintf(c.stderr, "No resources found in %s namespace.\n", ns)
		}
		return nil
	}
	if kind == core.KindEvent {
		sort.SliceStable(objs, func(i, j int) bool {
			a, b := objs[i].(*core.EventObj).LastTimestamp, objs[j].(*core.EventObj).LastTimestamp
			return a != nil && b != nil && a.Before(b.Time)
		})
	}
	t := newTable(kind, output == "wide", g.allNamespaces && kind.Namespaced())
	for _, o := range objs {
		t.add(o, time.Now())
	}
	t.print(c.stdout, true)
	return nil
}

func (c *cli) printStructured(v any, format string) error {
	b, err := json.MarshalIndent(v, "", "    ")
	if err != nil {
		return err
	}
	if format == "yaml" {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
	} else {
		b = append(b, '\n')
	}
	_, err = c.stdout.Write(b)
	return err
}

func (c *cli) watch(ctx context.Context, cl *api.Client, kind core.Kind, ns, name, selector, output string, allNS bool) error {
	events, err := cl.Watch(ctx, kind, ns, name, selector)
	if err != nil {
		return err
	}
	header := true
	for ev := range events {
		switch output {
		case "json", "yaml":
			if err := c.printStructured(map[string]any{"type": ev.Type, "object": ev.Object}, output); err != nil {
				return err
			}
		case "name":
			fmt.Fprintf(c.stdout, "%s/%s\n", strings.ToLower(string(kind)), ev.Object.GetMeta().Name)
		default:
			t := newTable(kind, output == "wide", allNS && kind.Namespaced())
			t.add(ev.Object, time.Now())
			if ev.Type == core.Deleted {
				t.rows[0][t.statusCol()] = "Deleted"
			}
			t.print(c.stdout, header)
			header = false
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("watch ended: the master closed the stream")
}

func (c *cli) describe(ctx context.Context, args []string) error {
	var g globals
	fs, err := c.flags("describe", args, &g, nil)
	if err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("usage: edgectl describe KIND NAME")
	}
	kind, err := core.ParseKind(fs.Arg(0))
	if err != nil {
		return err
	}
	cl, err := g.client()
	if err != nil {
		return err
	}
	obj, err := cl.Get(ctx, core.Key{Kind: kind, Namespace: nsFor(kind, g.ns()), Name: fs.Arg(1)})
	if err != nil {
		return err
	}
	var related []core.Object
	switch kind {
	case core.KindNode, core.KindDeployment, core.KindDaemonSet, core.KindService:
		related, _ = cl.List(ctx, core.KindPod, "", "")
	case core.KindPod:
		related, _ = cl.List(ctx, core.KindEvent, obj.GetMeta().Namespace, "")
	}
	describe(c.stdout, obj, related, time.Now())
	return nil
}

func (c *cli) logs(ctx context.Context, args []string) error {
	var g globals
	var follow bool
	var tail int
	var container string
	fs, err := c.flags("logs", args, &g, func(fs *pflag.FlagSet) {
		fs.BoolVarP(&follow, "follow", "f", false, "stream new output")
		fs.IntVar(&tail, "tail", -1, "lines from the end to show (-1 for all)")
		fs.StringVarP(&container, "container", "c", "", "container (default: the only one)")
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: edgectl logs POD [-c CONTAINER] [-f] [--tail N]")
	}
	pod := strings.TrimPrefix(strings.TrimPrefix(fs.Arg(0), "pod/"), "pods/")
	cl, err := g.client()
	if err != nil {
		return err
	}
	rc, err := cl.Logs(ctx, nsFor(core.KindPod, g.ns()), pod, container, follow, tail)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(c.stdout, rc)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (c *cli) nodeAction(ctx context.Context, action string, args []string) error {
	var g globals
	fs, err := c.flags(action, args, &g, func(fs *pflag.FlagSet) {
		fs.Bool("ignore-daemonsets", true, "DaemonSet pods always stay (accepted for kubectl habits)")
		fs.Bool("delete-emptydir-data", true, "accepted for kubectl habits")
		fs.Bool("force", false, "accepted for kubectl habits")
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: edgectl %s NODE", action)
	}
	cl, err := g.client()
	if err != nil {
		return err
	}
	results, err := cl.NodeAction(ctx, fs.Arg(0), action)
	if err != nil {
		return err
	}
	for _, r := range results {
		fmt.Fprintf(c.stdout, "%s/%s %s\n", strings.ToLower(string(r.Kind)), r.Name, r.Action)
	}
	if action == "drain" {
		fmt.Fprintf(c.stdout, "node/%s drained\n", fs.Arg(0))
	}
	return nil
}

func (c *cli) rollout(ctx context.Context, args []string) error {
	var g globals
	var timeout time.Duration
	var toRevision int64
	fs, err := c.flags("rollout", args, &g, func(fs *pflag.FlagSet) {
		fs.DurationVar(&timeout, "timeout", 0, "status: give up after this long (0: wait forever)")
		fs.Int64Var(&toRevision, "to-revision", 0, "undo: the revision to return to (default: the previous one)")
	})
	if err != nil {
		return err
	}
	usage := fmt.Errorf("usage: edgectl rollout status|history|undo deployment/NAME")
	if fs.NArg() < 2 {
		return usage
	}
	verb, target := fs.Arg(0), fs.Arg(1)
	kindName, name, ok := strings.Cut(target, "/")
	if !ok {
		if fs.NArg() < 3 {
			return usage
		}
		kindName, name = target, fs.Arg(2)
	}
	if k, err := core.ParseKind(kindName); err != nil || k != core.KindDeployment {
		return fmt.Errorf("rollout supports deployments, not %q", kindName)
	}
	cl, err := g.client()
	if err != nil {
		return err
	}
	ns := nsFor(core.KindDeployment, g.ns())
	switch verb {
	case "status":
		return c.rolloutStatus(ctx, cl, ns, name, timeout)
	case "undo":
		rev, err := cl.Undo(ctx, ns, name, toRevision)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "deployment.apps/%s rolled back to revision %d\n", name, rev)
		return nil
	case "history":
		o, err := cl.Get(ctx, core.Key{Kind: core.KindDeployment, Namespace: ns, Name: name})
		if err != nil {
			return err
		}
		d := o.(*core.Deployment)
		fmt.Fprintf(c.stdout, "deployment.apps/%s\n", name)
		t := &table{header: []string{"REVISION", "IMAGES", "CURRENT"}}
		for _, r := range d.Status.History {
			var imgs []string
			for _, ctr := range r.Template.Spec.Containers {
				imgs = append(imgs, ctr.Image)
			}
			cur := ""
			if r.Hash == d.Status.TemplateHash {
				cur = "*"
			}
			t.rows = append(t.rows, []string{fmt.Sprint(r.Revision), strings.Join(imgs, ","), cur})
		}
		t.print(c.stdout, true)
		return nil
	}
	return usage
}

func (c *cli) rolloutStatus(ctx context.Context, cl *api.Client, ns, name string, timeout time.Duration) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	events, err := cl.Watch(ctx, core.KindDeployment, ns, name, "")
	if err != nil {
		return err
	}
	last := ""
	for ev := range events {
		if ev.Type == core.Deleted {
			return fmt.Errorf("deployment %q was deleted", name)
		}
		d := ev.Object.(*core.Deployment)
		want := int32(d.DesiredReplicas())
		st := d.Status
		var msg string
		switch {
		case st.ObservedGeneration < d.Metadata.Generation:
			msg = "Waiting for deployment spec update to be observed..."
		case st.UpdatedReplicas < want:
			msg = fmt.Sprintf("Waiting for deployment %q rollout to finish: %d out of %d new replicas have been updated...", name, st.UpdatedReplicas, want)
		case st.Replicas > st.UpdatedReplicas:
			msg = fmt.Sprintf("Waiting for deployment %q rollout to finish: %d old replicas are pending termination...", name, st.Replicas-st.UpdatedReplicas)
		case st.AvailableReplicas < st.UpdatedReplicas:
			msg = fmt.Sprintf("Waiting for deployment %q rollout to finish: %d of %d updated replicas are available...", name, st.AvailableReplicas, st.UpdatedReplicas)
		default:
			fmt.Fprintf(c.stdout, "deployment %q successfully rolled out\n", name)
			return nil
		}
		if msg != last {
			fmt.Fprintln(c.stdout, msg)
			last = msg
		}
	}
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("timed out waiting for the rollout of deployment %q", name)
	}
	return fmt.Errorf("watch ended before the rollout finished")
}

func (c *cli) image(ctx context.Context, args []string) error {
	return fmt.Errorf("image import/ls are not available in this version yet: import images on a node with 'ctr -n edge images import FILE.tar' (the images work will add them)")
}

func (c *cli) tokenCmd(ctx context.Context, args []string) error {
	var g globals
	var ttl, desc, output string
	fs, err := c.flags("token", args, &g, func(fs *pflag.FlagSet) {
		fs.StringVar(&ttl, "ttl", "24h", "lifetime of a new token (0 for no expiry)")
		fs.StringVar(&desc, "description", "", "what the token is for")
		fs.StringVarP(&output, "output", "o", "table", "table or json (token ls)")
	})
	if err != nil {
		return err
	}
	const usage = "usage: edgectl token create [--ttl 24h] [--description TEXT] | token ls | token rm ID | token rotate-admin"
	if fs.NArg() == 0 {
		return fmt.Errorf("%s", usage)
	}
	cl, path, err := g.clientAndConfig()
	if err != nil {
		return err
	}
	switch verb := fs.Arg(0); {
	case verb == "create" && fs.NArg() == 1:
		resp, err := cl.CreateToken(ctx, api.TokenRequest{TTL: ttl, Description: desc})
		if err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, resp.Token)
		return nil
	case (verb == "ls" || verb == "list") && fs.NArg() == 1:
		list, err := cl.ListTokens(ctx)
		if err != nil {
			return err
		}
		if output == "json" {
			return c.printStructured(map[string]any{"items": list}, "json")
		}
		t := &table{header: []string{"ID", "KIND", "AGE", "EXPIRES", "DESCRIPTION"}}
		for _, tok := range list {
			expires := "never"
			if tok.ExpiresAt != nil {
				expires = tok.ExpiresAt.UTC().Format(time.RFC3339)
				if tok.ExpiresAt.Before(time.Now()) {
					expires += " (expired)"
				}
			}
			t.rows = append(t.rows, []string{tok.ID, tok.Kind, Age(tok.CreatedAt, time.Now()), expires, tok.Description})
		}
		t.print(c.stdout, true)
		return nil
	case (verb == "rm" || verb == "delete") && fs.NArg() == 2:
		if err := cl.DeleteToken(ctx, fs.Arg(1)); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "token/%s deleted\n", fs.Arg(1))
		return nil
	case verb == "rotate-admin" && fs.NArg() == 1:
		token, err := cl.RotateAdmin(ctx)
		if err != nil {
			return err
		}
		if path == "" || g.token != "" {
			fmt.Fprintln(c.stderr, "admin token rotated: the old one no longer works; the new one is also in admin.conf in the master's data dir")
			fmt.Fprintln(c.stdout, token)
			return nil
		}
		cfg, err := api.LoadConfig(path)
		if err != nil {
			return fmt.Errorf("admin token rotated, but %s could not be read to update it (%v): the new token is %s", path, err, token)
		}
		cfg.Token = token
		if err := fsutil.WriteFileAtomic(path, cfg.Marshal(), 0o600); err != nil {
			return fmt.Errorf("admin token rotated, but %s could not be updated (%v): the new token is %s", path, err, token)
		}
		fmt.Fprintf(c.stdout, "admin token rotated: the old one no longer works; %s and the master's admin.conf hold the new one\n", path)
		return nil
	}
	return fmt.Errorf("%s", usage)
}

func (c *cli) discover(ctx context.Context, args []string) error {
	var g globals
	var wait time.Duration
	var ifaces []string
	var output string
	_, err := c.flags("discover", args, &g, func(fs *pflag.FlagSet) {
		fs.DurationVar(&wait, "wait", 3*time.Second, "how long to listen")
		fs.StringSliceVar(&ifaces, "interface", nil, "interfaces to listen on (default all)")
		fs.StringVarP(&output, "output", "o", "table", "table or json")
	})
	if err != nil {
		return err
	}
	masters, err := discovery.Browse(ctx, wait, ifaces)
	if err != nil {
		return err
	}
	if output == "json" {
		return c.printStructured(map[string]any{"items": masters}, "json")
	}
	if len(masters) == 0 {
		fmt.Fprintln(c.stderr, "No masters found on the LAN.")
		return nil
	}
	t := &table{header: []string{"NAME", "URL", "MQTT-PORT", "CA-HASH"}}
	for _, m := range masters {
		hash := m.CAHash
		if len(hash) > 16 {
			hash = hash[:16]
		}
		t.rows = append(t.rows, []string{m.Instance, m.URL(), fmt.Sprint(m.MQTTPort), hash})
	}
	t.print(c.stdout, true)
	return nil
}

func (c *cli) version(ctx context.Context, args []string) error {
	var g globals
	var short bool
	_, err := c.flags("version", args, &g, func(fs *pflag.FlagSet) {
		fs.BoolVar(&short, "client", false, "client version only")
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Client Version: %s\n", version.Version)
	if short {
		return nil
	}
	cl, err := g.client()
	if err != nil {
		return err
	}
	v, err := cl.Version(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Server Version: %s\n", v.Version)
	return nil
}
