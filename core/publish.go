package core

import (
	"context"
	"strings"
	"time"
)

// Publishing each node's desired state.

// DesiredFor builds a node's desired state from all pods.
func DesiredFor(node string, pods []*Pod) *DesiredState {
	ds := &DesiredState{Node: node, Pods: []*Pod{}}
	for _, p := range pods {
		if p.Spec.NodeName != node || p.Terminating() {
			continue
		}
		ds.Pods = append(ds.Pods, &Pod{TypeMeta: p.TypeMeta, Metadata: ObjectMeta{
			Name: p.Metadata.Name, Namespace: p.Metadata.Namespace, UID: p.Metadata.UID,
			Labels: p.Metadata.Labels, Annotations: p.Metadata.Annotations,
		}, Spec: p.Spec})
	}
	ds.Hash = Hash(ds.Pods)
	return ds
}

// publish sends each node whose desired pod set changed its new set. A
// cheap fingerprint (pod UIDs and resourceVersions) skips unchanged nodes
// without hashing their pods on every pass.
func (c *Controllers) publish(ctx context.Context) error {
	nodes, err := ListAs[*Node](ctx, c.Store, KindNode, "")
	if err != nil {
		return err
	}
	pods, err := ListAs[*Pod](ctx, c.Store, KindPod, "")
	if err != nil {
		return err
	}
	deployments, err := ListAs[*Deployment](ctx, c.Store, KindDeployment, "")
	if err != nil {
		return err
	}
	fetch := prefetch(deployments, pods, nodes)
	byNode := map[string][]*Pod{}
	for _, p := range pods {
		if p.Spec.NodeName != "" && !p.Terminating() {
			byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	present := map[string]bool{}
	for _, n := range nodes {
		present[n.Metadata.Name] = true
	}
	for name := range c.published {
		if !present[name] { // a deleted node must stop everything it still runs
			if err := c.Bus.PublishDesired(ctx, DesiredFor(name, nil)); err != nil {
				return err
			}
			delete(c.published, name)
			delete(c.publishedAt, name)
			delete(c.fingerprints, name)
		}
	}
	var fp strings.Builder
	for _, n := range nodes {
		name := n.Metadata.Name
		fp.Reset()
		for _, p := range byNode[name] {
			fp.WriteString(p.Metadata.UID)
			fp.WriteByte('@')
			fp.WriteString(p.Metadata.ResourceVersion)
			fp.WriteByte(',')
		}
		for _, img := range fetch[name] {
			fp.WriteString(img)
			fp.WriteByte(',')
		}
		if _, ok := c.published[name]; ok && c.fingerprints[name] == fp.String() {
			continue
		}
		ds := DesiredFor(name, byNode[name])
		if len(fetch[name]) > 0 {
			ds.Prefetch = fetch[name]
			ds.Hash = Hash(ds)
		}
		if c.published[name] != ds.Hash {
			if err := c.Bus.PublishDesired(ctx, ds); err != nil {
				return err
			}
			c.published[name] = ds.Hash
			c.publishedAt[name] = c.Now()
		}
		c.fingerprints[name] = fp.String()
	}
	return nil
}

// republishAfter is how long an agent may report another desired-state
// hash than the one published for its node before it is sent again: longer
// than a publish and a report take to cross, so a report already on its way
// does not cause a second publish.
const republishAfter = 10 * time.Second

// CheckDesired compares the desired-state hash an agent says it acts on
// with the one last published for its node. When they differ (the agent
// lost its local state, or a broker lost the retained message) the node's
// desired state is published again, at most once per republishAfter.
func (c *Controllers) CheckDesired(node, hash string) {
	c.init()
	c.mu.Lock()
	pub, ok := c.published[node]
	stale := ok && pub != hash && c.Now().Sub(c.publishedAt[node]) >= republishAfter
	if stale {
		delete(c.published, node)
		delete(c.fingerprints, node)
		c.publishedAt[node] = c.Now()
	}
	c.mu.Unlock()
	if stale {
		c.Log.Info("publishing a node's desired state again: its agent acts on another", "node", node, "agent-hash", hash, "published", pub)
		c.Kick()
	}
}
