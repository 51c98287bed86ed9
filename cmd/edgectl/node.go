package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/edgeorch/edge/core"
	"github.com/spf13/pflag"
)

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

// taint adds or removes node taints, kubectl style:
// edgectl taint NODE KEY[=VALUE]:EFFECT[-] ...
func (c *cli) taint(ctx context.Context, args []string) error {
	var g globals
	fs, err := c.flags("taint", args, &g, nil)
	if err != nil {
		return err
	}
	if fs.NArg() < 2 {
		return fmt.Errorf("usage: edgectl taint NODE KEY[=VALUE]:EFFECT[-] ... (EFFECT: NoSchedule, PreferNoSchedule, NoExecute; a trailing - removes)")
	}
	cl, err := g.client()
	if err != nil {
		return err
	}
	for _, spec := range fs.Args()[1:] {
		results, err := cl.Taint(ctx, fs.Arg(0), spec)
		if err != nil {
			return err
		}
		for _, r := range results {
			fmt.Fprintf(c.stdout, "node/%s %s\n", r.Name, r.Action)
		}
	}
	return nil
}
