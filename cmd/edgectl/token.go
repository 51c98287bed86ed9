package main

import (
	"context"
	"fmt"
	"time"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/internal/fsutil"
	"github.com/spf13/pflag"
)

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
