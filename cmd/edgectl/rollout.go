package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/core"
	"github.com/spf13/pflag"
)

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
