// Command cluster runs a whole cluster on one machine for people to try:
// a LAN of network namespaces with a master, workers (each with its own
// containerd) and a gateway for edgectl. It is the e2e tests' harness,
// detached so it outlives the command.
//
//	cluster up [--workers 3]    make cluster
//	cluster down                make cluster-down
//	cluster stop|start NODE     kill a node's agent and containerd / bring them back
//	cluster cut|restore NODE    take a node's link down / up
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/edgeorch/edge/e2e"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := pflag.NewFlagSet("cluster", pflag.ContinueOnError)
	workers := fs.Int("workers", 3, "number of workers")
	dir := fs.String("dir", ".cluster", "state, data and logs")
	bin := fs.String("bin", "bin", "directory with edgemaster, edgeagent and edgectl")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root: network namespaces, containerd and cgroups (sudo make cluster)")
	}
	absDir, _ := filepath.Abs(*dir)
	absBin, _ := filepath.Abs(*bin)
	switch fs.Arg(0) {
	case "up":
		return up(absDir, absBin, *workers)
	case "down":
		f, err := e2e.LoadFleet(absDir)
		if err != nil {
			return fmt.Errorf("no cluster in %s: %v", absDir, err)
		}
		f.Detach = true
		err = f.Destroy()
		os.RemoveAll(absDir)
		if err == nil {
			fmt.Println("cluster removed")
		}
		return err
	case "stop", "start", "cut", "restore":
		f, err := e2e.LoadFleet(absDir)
		if err != nil {
			return fmt.Errorf("no cluster in %s: %v", absDir, err)
		}
		f.Detach = true
		h := f.Host(fs.Arg(1))
		if h == nil || h.Socket == "" {
			return fmt.Errorf("no worker %q", fs.Arg(1))
		}
		switch fs.Arg(0) {
		case "stop":
			for _, name := range []string{h.Name + "-edgeagent", h.Name + "-containerd"} {
				if p := f.Proc(name); p != nil {
					p.Stop(syscall.SIGKILL, time.Second)
				}
			}
			return nil
		case "start":
			if err := f.RestartContainerd(h); err != nil {
				return err
			}
			token, err := f.JoinToken(f.Host("master"))
			if err != nil {
				return err
			}
			_, err = f.StartAgent(h, token, "")
			return err
		case "cut":
			return f.LinkDown(h)
		default:
			return f.LinkUp(h)
		}
	}
	return fmt.Errorf("usage: cluster up [--workers N] | down | stop|start|cut|restore NODE")
}

func up(dir, bin string, workers int) error {
	if _, err := os.Stat(filepath.Join(dir, "state.json")); err == nil {
		return fmt.Errorf("a cluster is already up in %s (make cluster-down)", dir)
	}
	f, err := e2e.NewFleet("edge", dir, bin)
	if err != nil {
		return err
	}
	f.Detach = true
	fail := func(err error) error {
		f.Destroy()
		os.RemoveAll(dir)
		return err
	}
	master, err := f.AddHost("master")
	if err != nil {
		return fail(err)
	}
	var ws []*e2e.Host
	for i := 1; i <= workers; i++ {
		h, err := f.AddHost(fmt.Sprintf("w%d", i))
		if err != nil {
			return fail(err)
		}
		ws = append(ws, h)
	}
	gw, err := f.AddHost("gw")
	if err != nil {
		return fail(err)
	}
	fmt.Printf("LAN %s.0/24: master %s, workers %d, gateway %s\n", f.Subnet, master.IP, workers, gw.IP)
	if _, err := f.StartMaster(master); err != nil {
		return fail(err)
	}
	token, err := f.JoinToken(master)
	if err != nil {
		return fail(err)
	}
	for _, w := range ws {
		if err := f.StartContainerd(w); err != nil {
			return fail(err)
		}
		if _, err := f.StartAgent(w, token, ""); err != nil { // they find the master by mDNS
			return fail(err)
		}
	}
	wrapper := filepath.Join(dir, "edgectl")
	script := fmt.Sprintf("#!/bin/sh\n# edgectl on the cluster's gateway\nexec nsenter --net=/run/netns/%s %s --config %s \"$@\"\n",
		gw.NS, filepath.Join(bin, "edgectl"), filepath.Join(f.MasterDir(master), "admin.conf"))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		return fail(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, _, _ := f.Edgectl(gw, master, "get", "nodes")
		ready := 0
		for _, w := range ws {
			if containsLine(out, w.Name, " Ready ") {
				ready++
			}
		}
		if ready == len(ws) {
			fmt.Print(out)
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("workers did not become Ready; see %s/*.log:\n%s", dir, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	rel, _ := filepath.Rel(mustWd(), wrapper)
	fmt.Printf(`
Try:
  %[1]s apply -f build/demo/web.yaml && %[1]s get pods -o wide
  %[1]s discover
  go run ./build/cluster stop w1      # kill a node's agent and containerd (start w1 brings it back)
  go run ./build/cluster cut w2       # take a node off the LAN (restore w2)
Logs: %[2]s/*.log. Remove everything: make cluster-down
`, rel, dir)
	return nil
}

func containsLine(out, name, what string) bool {
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, name+" ") && strings.Contains(line, what) {
			return true
		}
	}
	return false
}

func mustWd() string {
	wd, _ := os.Getwd()
	return wd
}
