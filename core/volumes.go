package core

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"
)

// The volume controller's pass and the scheduler's view of claims: static
// binding, provisioning at first use, protection of claims in use, and
// reclaiming released volumes.

// volumeIndex is a snapshot's claims, volumes and classes.
type volumeIndex struct {
	claims  map[string]*PersistentVolumeClaim // namespace/name
	volumes map[string]*PersistentVolume
	classes map[string]*StorageClass
	nodes   map[string]*Node
	// used is the storage provisioned on each node, in bytes, with what
	// this pass placed; pinned is the node of each claim provisioned in
	// this pass.
	used   map[string]int64
	pinned map[string]string
	// users are the pods bound to a node, and not finished, that use each
	// claim (namespace/name): a pending pod does not hold a claim (as
	// Kubernetes' pvc-protection), or one waiting for a claim being
	// deleted would keep it for ever.
	users map[string][]*Pod
	// once holds the ReadWriteOncePod claims a pod took in this pass.
	once map[string]bool
}

func newVolumeIndex(s *snapshot) *volumeIndex {
	vi := &volumeIndex{claims: map[string]*PersistentVolumeClaim{}, volumes: map[string]*PersistentVolume{},
		classes: map[string]*StorageClass{}, nodes: map[string]*Node{}, used: map[string]int64{}, pinned: map[string]string{},
		users: map[string][]*Pod{}, once: map[string]bool{}}
	for _, c := range s.claims {
		vi.claims[c.Metadata.Namespace+"/"+c.Metadata.Name] = c
	}
	for _, v := range s.volumes {
		vi.volumes[v.Metadata.Name] = v
		if v.Provisioned() {
			vi.used[volumeNode(v)] += v.Capacity()
		}
	}
	for _, sc := range s.classes {
		vi.classes[sc.Metadata.Name] = sc
	}
	for _, n := range s.nodes {
		vi.nodes[n.Metadata.Name] = n
	}
	if len(s.claims)+len(s.volumes) > 0 {
		for _, p := range s.pods {
			if p.Terminal() || p.Spec.NodeName == "" {
				continue
			}
			for _, name := range p.Spec.ClaimNames() {
				k := p.Metadata.Namespace + "/" + name
				vi.users[k] = append(vi.users[k], p)
			}
		}
	}
	return vi
}

// volumeNode returns the node a provisioned volume is on.
func volumeNode(v *PersistentVolume) string {
	if a := v.Spec.NodeAffinity; a != nil && a.Required != nil {
		for _, t := range a.Required.NodeSelectorTerms {
			for _, r := range t.MatchExpressions {
				if r.Key == LabelHostname && r.Operator == "In" && len(r.Values) == 1 {
					return r.Values[0]
				}
			}
		}
	}
	return ""
}

// podVolumes is what a pending pod's claims ask of its node.
type podVolumes struct {
	bound  []*PersistentVolume // volumes of bound claims
	pinned []string            // nodes of claims provisioned this pass
	// pinnedClaims are those claims: the pod's write checks they were
	// provisioned indeed.
	pinnedClaims []*PersistentVolumeClaim
	provision    []*PersistentVolumeClaim // claims to provision where the pod goes
	storage      int64                    // their requests
}

// forPod resolves a pod's claims, or says why the pod cannot be placed at
// all (on any node).
func (vi *volumeIndex) forPod(p *Pod) (*podVolumes, string) {
	names := p.Spec.ClaimNames()
	if len(names) == 0 {
		return nil, ""
	}
	pv := &podVolumes{}
	for _, name := range names {
		k := p.Metadata.Namespace + "/" + name
		c := vi.claims[k]
		switch {
		case c == nil:
			return nil, fmt.Sprintf("persistentvolumeclaim %q not found", name)
		case c.Metadata.DeletionTimestamp != nil:
			return nil, fmt.Sprintf("persistentvolumeclaim %q is being deleted", name)
		case slices.Contains(c.Spec.AccessModes, ReadWriteOncePod):
			for _, other := range vi.users[k] {
				if other.Metadata.UID != p.Metadata.UID {
					return nil, fmt.Sprintf("persistentvolumeclaim %q is ReadWriteOncePod and used by pod %q", name, other.Metadata.Name)
				}
			}
			if vi.once[k] {
				return nil, fmt.Sprintf("persistentvolumeclaim %q is ReadWriteOncePod and another pod was just placed with it", name)
			}
		}
		if c.Bound() {
			v := vi.volumes[c.Spec.VolumeName]
			if v == nil {
				return nil, fmt.Sprintf("persistentvolumeclaim %q is bound to persistentvolume %q, which is gone", name, c.Spec.VolumeName)
			}
			pv.bound = append(pv.bound, v)
			continue
		}
		if n, ok := vi.pinned[k]; ok {
			pv.pinned = append(pv.pinned, n)
			pv.pinnedClaims = append(pv.pinnedClaims, c)
			continue
		}
		if c.Spec.VolumeName != "" {
			if v := vi.volumes[c.Spec.VolumeName]; v != nil {
				// Named, not bound yet: the binder takes it this pass or says why not.
				return nil, fmt.Sprintf("persistentvolumeclaim %q is not bound yet (%s)", name, c.Status.Message)
			}
		}
		if vi.staticOnly(c) {
			return nil, fmt.Sprintf("persistentvolumeclaim %q (class %q) waits for a PersistentVolume of its class: this class is not provisioned", name, c.StorageClass())
		}
		pv.provision = append(pv.provision, c)
		pv.storage += c.Request()
	}
	return pv, ""
}

// staticOnly reports whether c binds only to volumes made by hand: the
// empty class (as in Kubernetes), the classes conventionally used for
// them ("manual", "local-storage"), and a StorageClass whose provisioner
// is kubernetes.io/no-provisioner.
func (vi *volumeIndex) staticOnly(c *PersistentVolumeClaim) bool {
	switch sc := c.StorageClass(); sc {
	case "", "manual", "local-storage":
		return true
	default:
		return vi.classes[sc] != nil && vi.classes[sc].Provisioner == NoProvisioner
	}
}

// fits says whether node n can hold the pod's volumes, and if not why.
func (vi *volumeIndex) fits(pv *podVolumes, n *Node) string {
	for _, v := range pv.bound {
		if !v.FitsNode(n.Metadata.Labels) {
			return reasonVolumeNode
		}
	}
	for _, node := range pv.pinned {
		if node != n.Metadata.Name {
			return reasonVolumeNode
		}
	}
	if len(pv.provision) == 0 {
		return ""
	}
	if n.Status.VolumeDir == "" {
		return reasonNoVolumeDir
	}
	if capacity, _ := n.Status.Capacity[ResourceStorage].Value(); capacity > 0 && vi.used[n.Metadata.Name]+pv.storage > capacity {
		return reasonStorage
	}
	return ""
}

// place records that pv's claims go to node.
func (vi *volumeIndex) place(pv *podVolumes, node string) {
	for _, c := range pv.provision {
		vi.pinned[c.Metadata.Namespace+"/"+c.Metadata.Name] = node
	}
	vi.used[node] += pv.storage
}

// placeOnce records the ReadWriteOncePod claims a placed pod took.
func (vi *volumeIndex) placeOnce(p *Pod) {
	for _, name := range p.Spec.ClaimNames() {
		k := p.Metadata.Namespace + "/" + name
		if c := vi.claims[k]; c != nil && slices.Contains(c.Spec.AccessModes, ReadWriteOncePod) {
			vi.once[k] = true
		}
	}
}

// provision creates the volume of claim c on node, binding both, in tx. It
// returns false when c changed since the pass's snapshot (the pod waits for
// the next pass).
func provision(tx Tx, planned *PersistentVolumeClaim, node *Node) (bool, error) {
	obj, err := tx.Get(KeyOf(planned))
	if ErrorCode(err) == ENOTFOUND {
		return false, nil
	} else if err != nil {
		return false, err
	}
	c := obj.(*PersistentVolumeClaim)
	if c.Metadata.UID != planned.Metadata.UID || c.Bound() || c.Metadata.DeletionTimestamp != nil {
		return false, nil
	}
	name := ProvisionedName(c)
	if _, err := tx.Get(Key{Kind: KindPersistentVolume, Name: name}); err == nil {
		return false, nil // someone made it since: the binder decides
	} else if ErrorCode(err) != ENOTFOUND {
		return false, err
	}
	policy := ReclaimDelete
	if sc, err := tx.Get(Key{Kind: KindStorageClass, Name: c.StorageClass()}); err == nil {
		policy = sc.(*StorageClass).ReclaimPolicy
	}
	host := node.Metadata.Labels[LabelHostname]
	if host == "" {
		host = node.Metadata.Name
	}
	v := &PersistentVolume{
		TypeMeta: TypeMeta{APIVersion: KindPersistentVolume.APIVersion(), Kind: KindPersistentVolume},
		Metadata: ObjectMeta{Name: name, Annotations: map[string]string{AnnotationProvisionedBy: LocalProvisioner}},
		Spec: PersistentVolumeSpec{
			Capacity:                      ResourceList{ResourceStorage: c.Spec.Resources.Requests[ResourceStorage]},
			AccessModes:                   c.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: policy,
			StorageClassName:              c.StorageClass(),
			VolumeMode:                    "Filesystem",
			HostPath:                      &HostPathVolumeSource{Path: ProvisionedPath(node.Status.VolumeDir, name, c), Type: "DirectoryOrCreate"},
			NodeAffinity: &VolumeNodeAffinity{Required: &NodeSelector{NodeSelectorTerms: []NodeSelectorTerm{{
				MatchExpressions: []NodeSelectorRequirement{{Key: LabelHostname, Operator: "In", Values: []string{host}}}}}}},
		},
		Status: PersistentVolumeStatus{Phase: VolumeBound},
	}
	if host != node.Metadata.Name { // volumeNode reads the node's name back from here
		v.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Values[0] = node.Metadata.Name
	}
	bindRefs(c, v)
	if err := tx.Create(v); err != nil {
		return false, err
	}
	return true, tx.Put(c)
}

// bindRefs points c and v at each other (both already copies).
func bindRefs(c *PersistentVolumeClaim, v *PersistentVolume) {
	v.Spec.ClaimRef = &ClaimReference{APIVersion: "v1", Kind: string(KindPersistentVolumeClaim),
		Namespace: c.Metadata.Namespace, Name: c.Metadata.Name, UID: c.Metadata.UID}
	v.Status = PersistentVolumeStatus{Phase: VolumeBound}
	c.Spec.VolumeName = v.Metadata.Name
	c.Status = PersistentVolumeClaimStatus{Phase: ClaimBound, AccessModes: v.Spec.AccessModes,
		Capacity: ResourceList{ResourceStorage: v.Spec.Capacity[ResourceStorage]}}
}

// staticMatch returns the best volume made by hand for an unbound claim:
// of its class, with its access modes, large enough, matching its
// selector; the smallest such, as Kubernetes picks.
func (vi *volumeIndex) staticMatch(c *PersistentVolumeClaim) *PersistentVolume {
	if c.Spec.VolumeName != "" {
		v := vi.volumes[c.Spec.VolumeName]
		if v != nil && claimable(v, c) {
			return v
		}
		return nil
	}
	var best *PersistentVolume
	for _, v := range vi.volumes {
		if v.Provisioned() || !claimable(v, c) || v.Spec.StorageClassName != c.StorageClass() || v.Capacity() < c.Request() {
			continue
		}
		if s := c.Spec.Selector; !s.Empty() && !s.Matches(v.Metadata.Labels) {
			continue
		}
		missing := false
		for _, m := range c.Spec.AccessModes {
			missing = missing || !slices.Contains(v.Spec.AccessModes, m)
		}
		if missing {
			continue
		}
		if best == nil || v.Capacity() < best.Capacity() || (v.Capacity() == best.Capacity() && v.Metadata.Name < best.Metadata.Name) {
			best = v
		}
	}
	return best
}

// claimable reports whether v is free for c: not bound elsewhere, not
// being deleted, not released (a released volume holds someone's data and
// is reused only once applied again, as in Kubernetes).
func claimable(v *PersistentVolume, c *PersistentVolumeClaim) bool {
	if v.Metadata.DeletionTimestamp != nil || v.Status.Phase == VolumeReleased {
		return false
	}
	if r := v.Spec.ClaimRef; r != nil {
		return r.Name == c.Metadata.Name && (r.Namespace == "" || r.Namespace == c.Metadata.Namespace) &&
			(r.UID == "" || r.UID == c.Metadata.UID)
	}
	return v.Status.Phase != VolumeBound
}

// syncVolumes binds claims to volumes made by hand, deletes claims whose
// deletion waited for their pods, and reclaims volumes whose claim is gone.
func (c *Controllers) syncVolumes(ctx context.Context, s *snapshot, now time.Time) error {
	if len(s.claims)+len(s.volumes) == 0 {
		return nil
	}
	vi := newVolumeIndex(s)
	keys := make([]string, 0, len(vi.claims))
	for k := range vi.claims {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	owners := map[string]bool{}
	for _, sts := range s.statefulsets {
		owners[sts.Metadata.UID] = true
	}
	for _, k := range keys {
		claim := vi.claims[k]
		// A StatefulSet's claim with whenDeleted: Delete goes with it.
		if refs := claim.Metadata.OwnerReferences; len(refs) == 1 && refs[0].Kind == KindStatefulSet && !owners[refs[0].UID] &&
			claim.Metadata.DeletionTimestamp == nil {
			if err := c.updateObject(ctx, claim, func(tx Tx, cur Object) error {
				return deleteClaim(tx, cur.(*PersistentVolumeClaim), now)
			}); err != nil {
				return err
			}
			continue
		}
		switch {
		case claim.Metadata.DeletionTimestamp != nil:
			if len(vi.users[k]) > 0 {
				continue // protected while a pod uses it
			}
			if err := c.updateObject(ctx, claim, func(tx Tx, cur Object) error { return tx.Delete(KeyOf(cur)) }); err != nil {
				return err
			}
		case claim.Bound():
			if vi.volumes[claim.Spec.VolumeName] == nil && claim.Status.Phase != ClaimLost {
				next := Clone(claim)
				next.Status.Phase = ClaimLost
				next.Status.Message = fmt.Sprintf("its persistentvolume %q is gone; the data is no longer reachable", claim.Spec.VolumeName)
				if err := c.updateObject(ctx, claim, func(tx Tx, _ Object) error { return tx.Put(next) }); err != nil {
					return err
				}
			}
		default:
			v := vi.staticMatch(claim)
			if v == nil && !vi.staticOnly(claim) && (claim.Spec.VolumeName == "" || vi.volumes[claim.Spec.VolumeName] == nil) {
				// A pod placed past the scheduler (nodeName, a DaemonSet's)
				// has its claim provisioned where it is.
				var node *Node
				for _, p := range vi.users[k] {
					if n := vi.nodes[p.Spec.NodeName]; n != nil && n.Status.VolumeDir != "" {
						node = n
						break
					}
				}
				if node != nil {
					err := c.updateObject(ctx, claim, func(tx Tx, _ Object) error {
						_, err := provision(tx, claim, node)
						return err
					})
					if err != nil {
						return err
					}
					continue
				}
			}
			if v == nil {
				msg := "waiting for first consumer to be created before binding"
				if vi.staticOnly(claim) {
					msg = fmt.Sprintf("waiting for a PersistentVolume of class %q to match (this class is not provisioned)", claim.StorageClass())
				}
				if claim.Spec.VolumeName != "" && vi.volumes[claim.Spec.VolumeName] != nil {
					msg = fmt.Sprintf("persistentvolume %q is not available to this claim (bound elsewhere, released, or of another class)", claim.Spec.VolumeName)
				}
				if claim.Status.Message == msg {
					continue
				}
				next := Clone(claim)
				next.Status = PersistentVolumeClaimStatus{Phase: ClaimPending, Message: msg}
				if err := c.updateObject(ctx, claim, func(tx Tx, _ Object) error { return tx.Put(next) }); err != nil {
					return err
				}
				continue
			}
			err := c.updateObject(ctx, claim, func(tx Tx, _ Object) error {
				obj, err := tx.Get(KeyOf(v))
				if err != nil {
					return err
				}
				cur := obj.(*PersistentVolume)
				if cur.Metadata.ResourceVersion != v.Metadata.ResourceVersion {
					return nil // changed since: next pass
				}
				nc, nv := Clone(claim), Clone(cur)
				bindRefs(nc, nv)
				if err := tx.Put(nv); err != nil {
					return err
				}
				return tx.Put(nc)
			})
			if err != nil {
				return err
			}
			delete(vi.volumes, v.Metadata.Name) // taken
		}
	}
	for _, v := range s.volumes {
		if err := c.reclaim(ctx, v, vi, now); err != nil {
			return err
		}
	}
	return nil
}

// reclaim releases a volume whose claim is gone, and deletes it when its
// policy says so: a provisioned one once its node removed the directory.
func (c *Controllers) reclaim(ctx context.Context, v *PersistentVolume, vi *volumeIndex, now time.Time) error {
	claimed := false
	if r := v.Spec.ClaimRef; r != nil && v.Status.Phase == VolumeBound {
		cl := vi.claims[r.Namespace+"/"+r.Name]
		claimed = cl != nil && (r.UID == "" || cl.Metadata.UID == r.UID)
	}
	if claimed {
		return nil
	}
	if r := v.Spec.ClaimRef; r != nil && v.Status.Phase == VolumeBound {
		// The claim is gone. Its pods may still be stopping on the node:
		// the data goes only once none is left.
		if len(vi.users[r.Namespace+"/"+r.Name]) > 0 {
			return nil
		}
		next := Clone(v)
		next.Status = PersistentVolumeStatus{Phase: VolumeReleased, Message: fmt.Sprintf("its claim %s/%s was deleted", r.Namespace, r.Name)}
		if v.Spec.PersistentVolumeReclaimPolicy == ReclaimDelete && v.Provisioned() {
			next.Metadata.DeletionTimestamp = NewTime(now) // the node removes the directory, then the record goes
		}
		if v.Spec.PersistentVolumeReclaimPolicy == ReclaimDelete && !v.Provisioned() {
			// A path the user made is never deleted by the cluster.
			return c.updateObject(ctx, v, func(tx Tx, cur Object) error { return tx.Delete(KeyOf(cur)) })
		}
		return c.updateObject(ctx, v, func(tx Tx, _ Object) error { return tx.Put(next) })
	}
	if v.Metadata.DeletionTimestamp == nil {
		return nil
	}
	if v.Provisioned() && v.Spec.PersistentVolumeReclaimPolicy == ReclaimDelete {
		if n := vi.nodes[volumeNode(v)]; n != nil && slices.Contains(n.Status.Volumes, v.Metadata.Name) {
			return nil // its node still holds the directory
		}
	}
	return c.updateObject(ctx, v, func(tx Tx, cur Object) error { return tx.Delete(KeyOf(cur)) })
}

// updateObject runs fn on the stored obj in a transaction, unless obj
// changed since the snapshot (the next pass looks again).
func (c *Controllers) updateObject(ctx context.Context, obj Object, fn func(Tx, Object) error) error {
	err := c.Store.Update(ctx, func(tx Tx) error {
		cur, err := tx.Get(KeyOf(obj))
		if ErrorCode(err) == ENOTFOUND {
			return nil
		} else if err != nil {
			return err
		}
		if cur.GetMeta().ResourceVersion != obj.GetMeta().ResourceVersion {
			return nil
		}
		return fn(tx, cur)
	})
	if ErrorCode(err) == ECONFLICT {
		return nil
	}
	return err
}

// deleteClaim deletes a claim, or marks it terminating while a pod that
// has not finished uses it (Kubernetes' pvc-protection).
func deleteClaim(tx Tx, c *PersistentVolumeClaim, now time.Time) error {
	if c.Metadata.DeletionTimestamp != nil {
		return nil
	}
	pods, err := tx.List(KindPod, c.Metadata.Namespace)
	if err != nil {
		return err
	}
	for _, o := range pods {
		p := o.(*Pod)
		if !p.Terminal() && p.Spec.NodeName != "" && slices.Contains(p.Spec.ClaimNames(), c.Metadata.Name) {
			next := Clone(c)
			next.Metadata.DeletionTimestamp = NewTime(now)
			return tx.Put(next)
		}
	}
	return tx.Delete(KeyOf(c))
}

// deleteVolume deletes a volume, or marks a bound one terminating until
// its claim is gone (pv-protection).
func deleteVolume(tx Tx, v *PersistentVolume, now time.Time) error {
	if v.Status.Phase != VolumeBound || v.Spec.ClaimRef == nil {
		return tx.Delete(KeyOf(v))
	}
	if v.Metadata.DeletionTimestamp != nil {
		return nil
	}
	next := Clone(v)
	next.Metadata.DeletionTimestamp = NewTime(now)
	return tx.Put(next)
}

// claimVolumes returns where the claims of a node's pods are, on that
// node: a volume on another node is not sent (a DaemonSet's or a pinned
// pod there waits, saying so, instead of starting on an empty directory).
func claimVolumes(node *Node, pods []*Pod, claims map[string]*PersistentVolumeClaim, volumes map[string]*PersistentVolume) []ClaimVolume {
	if len(claims) == 0 {
		return nil
	}
	var out []ClaimVolume
	seen := map[string]bool{}
	for _, p := range pods {
		for _, v := range p.Spec.Volumes {
			src := v.PersistentVolumeClaim
			if src == nil {
				continue
			}
			k := p.Metadata.Namespace + "/" + src.ClaimName
			c := claims[k]
			if c == nil || !c.Bound() || seen[k] {
				continue
			}
			pv := volumes[c.Spec.VolumeName]
			if pv == nil || !pv.FitsNode(node.Metadata.Labels) {
				continue
			}
			seen[k] = true
			out = append(out, ClaimVolume{Namespace: p.Metadata.Namespace, Claim: src.ClaimName, Volume: pv.Metadata.Name,
				Path: pv.Path(), Provisioned: pv.Provisioned()})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Namespace+"/"+out[i].Claim < out[j].Namespace+"/"+out[j].Claim })
	return out
}

// releasedOn returns the provisioned volumes of node whose directories
// are to be removed.
func releasedOn(node string, volumes []*PersistentVolume) []ClaimVolume {
	var out []ClaimVolume
	for _, v := range volumes {
		if v.Metadata.DeletionTimestamp != nil && v.Provisioned() && v.Spec.PersistentVolumeReclaimPolicy == ReclaimDelete &&
			v.Status.Phase == VolumeReleased && volumeNode(v) == node {
			out = append(out, ClaimVolume{Volume: v.Metadata.Name, Path: v.Path(), Provisioned: true})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Volume < out[j].Volume })
	return out
}
