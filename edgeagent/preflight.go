package edgeagent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/internal/fsutil"
	"github.com/edgeorch/edge/internal/preflight"
)

// ConditionPreflight is the node condition that carries the outcome of the
// agent's preflight checks (edgeagent check): True when none failed, False
// with the failing checks and their fixes in the message.
const ConditionPreflight = "PreflightPassed"

// preflightRetry is how often failing checks run again: a user fixing the
// machine (enabling a module, starting containerd) sees the node's
// condition follow without restarting the agent.
const preflightRetry = 5 * time.Minute

// maxConditionMessage keeps a condition's message readable in edgectl
// describe node (and well under a report's bound).
const maxConditionMessage = 2048

// CgroupParent is the cgroup that holds the containers of node (the
// default of Agent.CgroupParent).
func CgroupParent(node string) string { return "/edge/" + node }

// ContainerdVersion asks containerd at socket for its version through the
// containerd client, for edgeagent check. ctx bounds the call.
func ContainerdVersion(ctx context.Context, socket string) (string, error) {
	var v string
	err := withContainerd(ctx, socket, func(c *containerd.Client) error {
		ver, err := c.Version(ctx)
		v = "containerd " + ver.Version
		return err
	})
	return v, err
}

// ContainerdContentRoot asks containerd at socket where its content store
// is (the content plugin's root): /var/lib/containerd/... for Debian's,
// /var/lib/edge/containerd/... for the bundled one, whatever a user's
// config.toml says otherwise. The disk check looks there.
func ContainerdContentRoot(ctx context.Context, socket string) (string, error) {
	var root string
	err := withContainerd(ctx, socket, func(c *containerd.Client) (err error) {
		root, err = contentRoot(ctx, c)
		return err
	})
	return root, err
}

func contentRoot(ctx context.Context, c *containerd.Client) (string, error) {
	resp, err := c.IntrospectionService().Plugins(ctx, "type==io.containerd.content.v1")
	if err != nil {
		return "", err
	}
	for _, p := range resp.Plugins {
		if r := p.Exports["root"]; r != "" {
			return r, nil
		}
	}
	return "", errors.New("containerd names no content store root")
}

// withContainerd runs fn with a client of containerd at socket, connected
// within ctx's deadline (at most 3 s).
func withContainerd(ctx context.Context, socket string, fn func(*containerd.Client) error) error {
	timeout := 3 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	c, err := containerd.New(socket, containerd.WithTimeout(timeout))
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

// preflightLoop runs the checks once the agent is open, in the background
// (they must not delay the pods), and again every preflightRetry while any
// fails; each outcome goes out as the node's PreflightPassed condition.
func (a *Agent) preflightLoop() {
	defer a.wg.Done()
	for {
		rs := a.Preflight(a.ctx)
		if a.ctx.Err() != nil {
			return
		}
		c := preflightCondition(rs)
		a.setCondition(c)
		failed := preflight.Failed(rs)
		if len(failed) == 0 {
			return
		}
		var names []string
		for _, r := range failed {
			names = append(names, r.Name)
		}
		a.Log.Warn("preflight checks failed: run edgeagent check for the fixes", "failed", strings.Join(names, ", "), "retry", preflightRetry)
		timer, stop := a.timer(preflightRetry)
		select {
		case <-a.ctx.Done():
			stop()
			return
		case <-timer:
		}
	}
}

// preflightCondition sums the results up as one node condition.
func preflightCondition(rs []preflight.Result) core.NodeCondition {
	var failed, warned []string
	for _, r := range rs {
		line := r.Name + ": " + r.Detail
		if r.Fix != "" {
			line += " (fix: " + r.Fix + ")"
		}
		switch r.Status {
		case preflight.Fail:
			failed = append(failed, line)
		case preflight.Warn:
			warned = append(warned, line)
		}
	}
	c := core.NodeCondition{Type: ConditionPreflight, Status: core.ConditionTrue, Reason: "ChecksPassed",
		Message: fmt.Sprintf("%d checks passed", len(rs))}
	if len(failed) > 0 {
		c.Status, c.Reason = core.ConditionFalse, "ChecksFailed"
		c.Message = fmt.Sprintf("%d of %d checks failed: %s", len(failed), len(rs), strings.Join(failed, "; "))
	}
	if len(warned) > 0 {
		c.Message += "; warnings: " + strings.Join(warned, "; ")
	}
	c.Message = strings.Join(strings.Fields(c.Message), " ") // one line, no control characters
	if len(c.Message) > maxConditionMessage {
		c.Message = c.Message[:maxConditionMessage-3] + "..."
	}
	return c
}

// setCondition puts c among the node's conditions and reports a change.
// The slice is copied, not changed in place: a report being encoded may
// hold the old one.
func (a *Agent) setCondition(c core.NodeCondition) {
	a.mu.Lock()
	conds := make([]core.NodeCondition, 0, len(a.node.Conditions)+1)
	found, changed := false, true
	for _, old := range a.node.Conditions {
		if old.Type == c.Type {
			found, changed = true, old != c
			old = c
		}
		conds = append(conds, old)
	}
	if !found {
		conds = append(conds, c)
	}
	a.node.Conditions = conds
	a.mu.Unlock()
	if changed {
		a.markDirty()
	}
}

// ImageCacheBudget resolves --image-cache-size to bytes: a size, or a
// percentage of the disk containerd (at socket) keeps its content on,
// which need not be the data dir's (containerd on a USB disk, the agent's
// data on the card); of the data dir's disk only when containerd cannot
// say (not started yet).
func ImageCacheBudget(ctx context.Context, size, socket, dataDir string) (int64, error) {
	dir := dataDir
	if strings.HasSuffix(strings.TrimSpace(size), "%") {
		if root, err := ContainerdContentRoot(ctx, socket); err == nil {
			dir = root
		}
	}
	return fsutil.ParseBudget(size, dir)
}
