package core

import (
	"context"
	"sort"
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

// configFor returns the ConfigMaps and Secrets pods use that exist, in
// name order: a node gets only what its own pods read.
func configFor(pods []*Pod, cms map[string]*ConfigMap, secs map[string]*Secret) ([]*ConfigMap, []*Secret) {
	if len(cms)+len(secs) == 0 {
		return nil, nil // nothing to send (and no pass over every pod's spec)
	}
	var outC []*ConfigMap
	var outS []*Secret
	seenC, seenS := map[string]bool{}, map[string]bool{}
	for _, p := range pods {
		cmNames, secNames := p.Spec.ConfigRefs()
		for _, n := range cmNames {
			k := p.Metadata.Namespace + "/" + n
			if o := cms[k]; o != nil && !seenC[k] {
				seenC[k] = true
				outC = append(outC, o)
			}
		}
		for _, n := range secNames {
			k := p.Metadata.Namespace + "/" + n
			if o := secs[k]; o != nil && !seenS[k] {
				seenS[k] = true
				outS = append(outS, o)
			}
		}
	}
	sort.Slice(outC, func(i, j int) bool { return KeyOf(outC[i]).String() < KeyOf(outC[j]).String() })
	sort.Slice(outS, func(i, j int) bool { return KeyOf(outS[i]).String() < KeyOf(outS[j]).String() })
	return outC, outS
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
	fetch := prefetch(deployments, pods, nodes, c.templateHash)
	configMaps, err := ListAs[*ConfigMap](ctx, c.Store, KindConfigMap, "")
	if err != nil {
		return err
	}
	secrets, err := ListAs[*Secret](ctx, c.Store, KindSecret, "")
	if err != nil {
		return err
	}
	cms, secs := map[string]*ConfigMap{}, map[string]*Secret{}
	for _, o := range configMaps {
		cms[o.Metadata.Namespace+"/"+o.Metadata.Name] = o
	}
	for _, o := range secrets {
		secs[o.Metadata.Namespace+"/"+o.Metadata.Name] = o
	}
	claims, err := ListAs[*PersistentVolumeClaim](ctx, c.Store, KindPersistentVolumeClaim, "")
	if err != nil {
		return err
	}
	volumes, err := ListAs[*PersistentVolume](ctx, c.Store, KindPersistentVolume, "")
	if err != nil {
		return err
	}
	claimsByName, volumesByName := map[string]*PersistentVolumeClaim{}, map[string]*PersistentVolume{}
	for _, o := range claims {
		claimsByName[o.Metadata.Namespace+"/"+o.Metadata.Name] = o
	}
	for _, o := range volumes {
		volumesByName[o.Metadata.Name] = o
	}
	byNode := map[string][]*Pod{}
	for _, p := range pods {
		if p.Spec.NodeName != "" && !p.Terminating() {
			byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p)
		}
	}
	// c.mu guards the maps only: a publish may wait on a slow broker, and
	// CheckDesired (called for every agent report) must not wait with it.
	present := map[string]bool{}
	for _, n := range nodes {
		present[n.Metadata.Name] = true
	}
	c.mu.Lock()
	var gone []string
	for name := range c.published {
		if !present[name] {
			gone = append(gone, name)
		}
	}
	c.mu.Unlock()
	for _, name := range gone { // a deleted node must stop everything it still runs
		if err := c.Bus.PublishDesired(ctx, DesiredFor(name, nil)); err != nil {
			return err
		}
		c.mu.Lock()
		delete(c.published, name)
		delete(c.publishedAt, name)
		delete(c.fingerprints, name)
		delete(c.republishes, name)
		c.mu.Unlock()
	}
	var pinned []string
	if c.PinnedImages != nil {
		pinned = c.PinnedImages()
	}
	var fp strings.Builder
	for _, n := range nodes {
		name := n.Metadata.Name
		var nodePinned []string
		if len(pinned) > 0 && len(n.Status.Images) > 0 {
			// Agents report normalised names, as the store keeps them: a
			// set, not HasImage's normalising of every name for every
			// pinned image of every node at every pass.
			held := make(map[string]bool, len(n.Status.Images))
			for _, img := range n.Status.Images {
				for _, name := range img.Names {
					held[name] = true
				}
			}
			for _, ref := range pinned {
				if held[ref] {
					nodePinned = append(nodePinned, ref)
				}
			}
		}
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
		for _, img := range nodePinned {
			fp.WriteString("pin:" + img + ",")
		}
		fp.WriteString(n.Spec.PodCIDR)
		nodeCMs, nodeSecrets := configFor(byNode[name], cms, secs)
		for _, o := range nodeCMs {
			fp.WriteString(o.Metadata.UID + "@" + o.Metadata.ResourceVersion + ",")
		}
		for _, o := range nodeSecrets {
			fp.WriteString(o.Metadata.UID + "@" + o.Metadata.ResourceVersion + ",")
		}
		nodeVolumes := claimVolumes(n, byNode[name], claimsByName, volumesByName)
		released := releasedOn(name, volumes)
		for _, v := range nodeVolumes {
			fp.WriteString(v.Namespace + "/" + v.Claim + "=" + v.Path + ",")
		}
		for _, v := range released {
			fp.WriteString("-" + v.Path + ",")
		}
		c.mu.Lock()
		pub, ok := c.published[name]
		same := ok && c.fingerprints[name] == fp.String()
		c.mu.Unlock()
		if same {
			continue
		}
		ds := DesiredFor(name, byNode[name])
		if len(fetch[name]) > 0 || n.Spec.PodCIDR != "" || len(nodeCMs)+len(nodeSecrets)+len(nodeVolumes)+len(released)+len(nodePinned) > 0 {
			ds.Prefetch = fetch[name]
			ds.Pinned = nodePinned
			ds.PodCIDR = n.Spec.PodCIDR
			ds.ConfigMaps, ds.Secrets = nodeCMs, nodeSecrets
			ds.Volumes, ds.Released = nodeVolumes, released
			ds.Hash = Hash(ds)
		}
		if !ok || pub != ds.Hash {
			if err := c.Bus.PublishDesired(ctx, ds); err != nil {
				return err
			}
		}
		c.mu.Lock()
		if !ok || pub != ds.Hash {
			c.published[name] = ds.Hash
			c.publishedAt[name] = c.Now()
		}
		c.fingerprints[name] = fp.String()
		c.mu.Unlock()
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
// desired state is published again: after republishAfter, then after twice
// as long each time it still differs (up to an hour), so a node that never
// takes it (or claims not to) costs the master little.
func (c *Controllers) CheckDesired(node, hash string) {
	c.init()
	c.mu.Lock()
	pub, ok := c.published[node]
	if ok && pub == hash {
		delete(c.republishes, node)
	}
	wait := min(republishAfter<<min(c.republishes[node], 10), time.Hour)
	stale := ok && pub != hash && c.Now().Sub(c.publishedAt[node]) >= wait
	if stale {
		delete(c.published, node)
		delete(c.fingerprints, node)
		c.publishedAt[node] = c.Now()
		c.republishes[node]++
	}
	c.mu.Unlock()
	if stale {
		c.Log.Info("publishing a node's desired state again: its agent acts on another", "node", node, "agent-hash", hash, "published", pub)
		c.Kick()
	}
}
