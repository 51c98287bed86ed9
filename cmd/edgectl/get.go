package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/core"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

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
		return fmt.Errorf("usage: edgectl get KIND [NAME] (KIND: nodes, pods, deployments, daemonsets, jobs, cronjobs, services, namespaces, ...)")
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
	case core.KindNode, core.KindDeployment, core.KindDaemonSet, core.KindStatefulSet:
		related, _ = cl.List(ctx, core.KindPod, "", "")
	case core.KindJob:
		related, _ = cl.List(ctx, core.KindPod, obj.GetMeta().Namespace, "")
	case core.KindCronJob:
		related, _ = cl.List(ctx, core.KindEvent, obj.GetMeta().Namespace, "")
	case core.KindService:
		related, _ = cl.List(ctx, core.KindEndpoints, obj.GetMeta().Namespace, "")
	case core.KindPod:
		related, _ = cl.List(ctx, core.KindEvent, obj.GetMeta().Namespace, "")
	case core.KindPersistentVolumeClaim:
		related, _ = cl.List(ctx, core.KindPod, obj.GetMeta().Namespace, "")
	}
	describe(c.stdout, obj, related, time.Now())
	return nil
}
