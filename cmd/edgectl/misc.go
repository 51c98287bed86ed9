package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/edgeorch/edge/discovery"
	"github.com/edgeorch/edge/internal/version"
)

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
