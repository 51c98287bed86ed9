package core

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// StatefulSet runs pods with stable names NAME-0..N-1, each with its own
// claims from volumeClaimTemplates (TEMPLATE-NAME-i), started in order.
// The single-replica home-assistant pattern is the common case at the
// edge: one pod, pinned by its local volume to the node that holds its
// data, back there after every restart.
type StatefulSet struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta        `json:"metadata"`
	Spec     StatefulSetSpec   `json:"spec"`
	Status   StatefulSetStatus `json:"status,omitempty"`
}

func (s *StatefulSet) GetTypeMeta() *TypeMeta { return &s.TypeMeta }
func (s *StatefulSet) GetMeta() *ObjectMeta   { return &s.Metadata }

const (
	PodManagementOrderedReady = "OrderedReady"
	PodManagementParallel     = "Parallel"

	StatefulSetRollingUpdate = "RollingUpdate"
	StatefulSetOnDelete      = "OnDelete"

	// Labels Kubernetes puts on a StatefulSet's pods.
	LabelStatefulSetPodName = "statefulset.kubernetes.io/pod-name"
	LabelPodIndex           = "apps.kubernetes.io/pod-index"
	LabelRevisionHash       = "controller-revision-hash"
)

type StatefulSetSpec struct {
	Replicas             *int32                  `json:"replicas,omitempty"`
	Selector             *LabelSelector          `json:"selector"`
	Template             PodTemplateSpec         `json:"template"`
	VolumeClaimTemplates []PersistentVolumeClaim `json:"volumeClaimTemplates,omitempty"`
	// ServiceName is the headless service giving pods their DNS names
	// (POD.SERVICE.NAMESPACE.svc): each pod's hostname is its name and its
	// subdomain the service.
	ServiceName          string                    `json:"serviceName,omitempty"`
	PodManagementPolicy  string                    `json:"podManagementPolicy,omitempty"`
	UpdateStrategy       StatefulSetUpdateStrategy `json:"updateStrategy,omitempty"`
	RevisionHistoryLimit *int32                    `json:"revisionHistoryLimit,omitempty"`
	MinReadySeconds      int32                     `json:"minReadySeconds,omitempty"`
	// PersistentVolumeClaimRetentionPolicy says whether claims go with the
	// StatefulSet (whenDeleted) or with a scaled-away pod (whenScaled);
	// Retain, the default, keeps them.
	PersistentVolumeClaimRetentionPolicy *ClaimRetentionPolicy `json:"persistentVolumeClaimRetentionPolicy,omitempty"`
	Ordinals                             *StatefulSetOrdinals  `json:"ordinals,omitempty"`
}

type StatefulSetUpdateStrategy struct {
	Type          string                            `json:"type,omitempty"`
	RollingUpdate *RollingUpdateStatefulSetStrategy `json:"rollingUpdate,omitempty"`
}

type RollingUpdateStatefulSetStrategy struct {
	// Partition: only pods with an ordinal at least this are updated.
	Partition      *int32       `json:"partition,omitempty"`
	MaxUnavailable *IntOrString `json:"maxUnavailable,omitempty"`
}

type ClaimRetentionPolicy struct {
	WhenDeleted string `json:"whenDeleted,omitempty"`
	WhenScaled  string `json:"whenScaled,omitempty"`
}

type StatefulSetOrdinals struct {
	Start int32 `json:"start"`
}

type StatefulSetStatus struct {
	ObservedGeneration int64  `json:"observedGeneration,omitempty"`
	Replicas           int32  `json:"replicas"`
	ReadyReplicas      int32  `json:"readyReplicas"`
	CurrentReplicas    int32  `json:"currentReplicas"`
	UpdatedReplicas    int32  `json:"updatedReplicas"`
	AvailableReplicas  int32  `json:"availableReplicas"`
	CurrentRevision    string `json:"currentRevision,omitempty"`
	UpdateRevision     string `json:"updateRevision,omitempty"`
}

// DesiredReplicas returns spec.replicas, defaulting to 1.
func (s *StatefulSet) DesiredReplicas() int {
	if s.Spec.Replicas == nil {
		return 1
	}
	return int(*s.Spec.Replicas)
}

func (s *StatefulSet) start() int {
	if s.Spec.Ordinals != nil {
		return int(s.Spec.Ordinals.Start)
	}
	return 0
}

// PodName returns the name of the pod of ordinal i.
func (s *StatefulSet) PodName(i int) string { return s.Metadata.Name + "-" + strconv.Itoa(i) }

// ClaimName returns the claim of template t for the pod of ordinal i.
func (s *StatefulSet) ClaimName(t *PersistentVolumeClaim, i int) string {
	return t.Metadata.Name + "-" + s.PodName(i)
}

// ordinal returns the ordinal of one of s's pods, or -1.
func (s *StatefulSet) ordinal(p *Pod) int {
	rest, ok := strings.CutPrefix(p.Metadata.Name, s.Metadata.Name+"-")
	if !ok {
		return -1
	}
	i, err := strconv.Atoi(rest)
	if err != nil || i < 0 || strconv.Itoa(i) != rest {
		return -1
	}
	return i
}

func (s *StatefulSet) retention() ClaimRetentionPolicy {
	r := ClaimRetentionPolicy{WhenDeleted: ReclaimRetain, WhenScaled: ReclaimRetain}
	if p := s.Spec.PersistentVolumeClaimRetentionPolicy; p != nil {
		if p.WhenDeleted != "" {
			r.WhenDeleted = p.WhenDeleted
		}
		if p.WhenScaled != "" {
			r.WhenScaled = p.WhenScaled
		}
	}
	return r
}

// claimTemplateVolumes returns the pod volumes the claim templates add for
// ordinal i (claimName "" when only their names matter).
func (s *StatefulSet) claimTemplateVolumes(i int) []Volume {
	out := make([]Volume, len(s.Spec.VolumeClaimTemplates))
	for j := range s.Spec.VolumeClaimTemplates {
		t := &s.Spec.VolumeClaimTemplates[j]
		claim := ""
		if i >= 0 {
			claim = s.ClaimName(t, i)
		}
		out[j] = Volume{Name: t.Metadata.Name, PersistentVolumeClaim: &PersistentVolumeClaimVolumeSource{ClaimName: claim}}
	}
	return out
}

// newPod makes the pod of ordinal i.
func (s *StatefulSet) newPod(i int, hash string) *Pod {
	p := NewPodFromTemplate(s, &s.Spec.Template, hash, s.PodName(i))
	delete(p.Metadata.Labels, LabelTemplateHash)
	p.Metadata.Labels[LabelRevisionHash] = hash
	p.Metadata.Labels[LabelStatefulSetPodName] = p.Metadata.Name
	p.Metadata.Labels[LabelPodIndex] = strconv.Itoa(i)
	spec := s.Spec.Template.Spec // a copy: the volumes differ per pod
	spec.Hostname = p.Metadata.Name
	if s.Spec.ServiceName != "" {
		spec.Subdomain = s.Spec.ServiceName
	}
	if len(s.Spec.VolumeClaimTemplates) > 0 {
		vols := s.claimTemplateVolumes(i)
		for _, v := range spec.Volumes {
			if !slicesContainsVolume(vols, v.Name) {
				vols = append(vols, v)
			}
		}
		spec.Volumes = vols
	}
	p.Spec = spec
	return p
}

func slicesContainsVolume(vols []Volume, name string) bool {
	for _, v := range vols {
		if v.Name == name {
			return true
		}
	}
	return false
}

// newClaim makes the claim of template t for ordinal i, labelled with the
// StatefulSet's selector as Kubernetes does; with whenDeleted: Delete it
// is owned by the StatefulSet and goes with it.
func (s *StatefulSet) newClaim(t *PersistentVolumeClaim, i int) *PersistentVolumeClaim {
	c := &PersistentVolumeClaim{TypeMeta: TypeMeta{APIVersion: "v1", Kind: KindPersistentVolumeClaim},
		Metadata: ObjectMeta{Name: s.ClaimName(t, i), Namespace: s.Metadata.Namespace, Labels: map[string]string{},
			Annotations: t.Metadata.Annotations},
		Spec:   t.Spec,
		Status: PersistentVolumeClaimStatus{Phase: ClaimPending}}
	for k, v := range t.Metadata.Labels {
		c.Metadata.Labels[k] = v
	}
	if s.Spec.Selector != nil {
		for k, v := range s.Spec.Selector.MatchLabels {
			c.Metadata.Labels[k] = v
		}
	}
	if s.retention().WhenDeleted == ReclaimDelete {
		c.Metadata.OwnerReferences = []OwnerReference{{APIVersion: KindStatefulSet.APIVersion(), Kind: KindStatefulSet,
			Name: s.Metadata.Name, UID: s.Metadata.UID}}
	}
	return c
}

// StatefulSetPlan is what the StatefulSet controller wants changed.
type StatefulSetPlan struct {
	Plan
	Claims      []*PersistentVolumeClaim // to create if missing, before the pods
	DeleteClaim []string                 // names of claims of scaled-away ordinals (whenScaled: Delete)
}

// PlanStatefulSet plans s's pods. OrderedReady (the default) creates pod
// i only once every lower ordinal runs and is ready, removes the highest
// ordinal first and one at a time, and updates one pod at a time from the
// highest ordinal down (RollingUpdate, down to the partition); Parallel
// creates and removes all at once.
//
// existingClaims maps the names of the namespace's claims to whether they
// are live (false: being deleted).
func PlanStatefulSet(s *StatefulSet, pods []*Pod, existingClaims map[string]bool) (StatefulSetPlan, StatefulSetStatus) {
	var plan StatefulSetPlan
	hash := TemplateHash(&s.Spec.Template)
	first, n := s.start(), s.DesiredReplicas()
	byOrdinal := map[int]*Pod{}
	st := StatefulSetStatus{ObservedGeneration: s.Metadata.Generation, UpdateRevision: hash, CurrentRevision: hash}
	terminating := false
	for _, p := range pods {
		i := s.ordinal(p)
		if p.Terminating() {
			terminating = true
			continue
		}
		if i < 0 || byOrdinal[i] != nil {
			plan.Delete = append(plan.Delete, p) // not one of ours by name: gone
			continue
		}
		byOrdinal[i] = p
		st.Replicas++
		if p.Ready() {
			st.ReadyReplicas++
			st.AvailableReplicas++
		}
		if p.Metadata.Labels[LabelRevisionHash] == hash {
			st.UpdatedReplicas++
		} else {
			st.CurrentRevision = p.Metadata.Labels[LabelRevisionHash]
		}
	}
	st.CurrentReplicas = st.Replicas - st.UpdatedReplicas
	if st.CurrentRevision == hash {
		st.CurrentReplicas = st.Replicas
	}
	parallel := s.Spec.PodManagementPolicy == PodManagementParallel
	// Failed or finished pods are removed and made again under their name.
	for i, p := range byOrdinal {
		if p.Terminal() {
			plan.Delete = append(plan.Delete, p)
			delete(byOrdinal, i)
		}
	}
	// Scale down: ordinals outside [first, first+n), highest first.
	var extra []int
	for i := range byOrdinal {
		if i < first || i >= first+n {
			extra = append(extra, i)
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(extra)))
	allReady := func() bool {
		for i := first; i < first+n; i++ {
			if p := byOrdinal[i]; p == nil || !p.Ready() {
				return false
			}
		}
		return true
	}
	if len(extra) > 0 {
		if parallel {
			for _, i := range extra {
				plan.Delete = append(plan.Delete, byOrdinal[i])
			}
		} else if !terminating {
			plan.Delete = append(plan.Delete, byOrdinal[extra[0]])
		}
	}
	if s.retention().WhenScaled == ReclaimDelete {
		for name, live := range existingClaims {
			if !live {
				continue
			}
			for j := range s.Spec.VolumeClaimTemplates {
				t := &s.Spec.VolumeClaimTemplates[j]
				rest, ok := strings.CutPrefix(name, t.Metadata.Name+"-"+s.Metadata.Name+"-")
				i, err := strconv.Atoi(rest)
				if ok && err == nil && (i < first || i >= first+n) && byOrdinal[i] == nil {
					plan.DeleteClaim = append(plan.DeleteClaim, name)
				}
			}
		}
		sort.Strings(plan.DeleteClaim)
	}
	// claimsReady adds ordinal i's missing claims to the plan, and
	// reports false while one is still being deleted (its pod waits:
	// it would start on the old data's claim and lose it).
	claimsReady := func(i int) bool {
		ready := true
		for j := range s.Spec.VolumeClaimTemplates {
			c := s.newClaim(&s.Spec.VolumeClaimTemplates[j], i)
			switch live, ok := existingClaims[c.Metadata.Name]; {
			case !ok:
				plan.Claims = append(plan.Claims, c)
			case !live:
				ready = false
			}
		}
		return ready
	}
	// Scale up, in order. A running pod whose claim went gets it back, as
	// Kubernetes' controller does.
	for i := first; i < first+n; i++ {
		if byOrdinal[i] != nil {
			claimsReady(i)
			if !parallel && !byOrdinal[i].Ready() {
				break
			}
			continue
		}
		if terminatingName(pods, s.PodName(i)) || !claimsReady(i) {
			if !parallel {
				break
			}
			continue
		}
		plan.Create = append(plan.Create, s.newPod(i, hash))
		if !parallel {
			break
		}
	}
	// Rolling update: one stale pod at a time, highest ordinal first, once
	// every pod runs ready and none is stopping.
	if s.Spec.UpdateStrategy.Type == StatefulSetRollingUpdate && len(plan.Create)+len(plan.Delete) == 0 && !terminating && allReady() {
		partition := 0
		if ru := s.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil {
			partition = int(*ru.Partition)
		}
		for i := first + n - 1; i >= first && i >= partition; i-- {
			if p := byOrdinal[i]; p != nil && p.Metadata.Labels[LabelRevisionHash] != hash {
				plan.Delete = append(plan.Delete, p)
				break
			}
		}
	}
	return plan, st
}

func terminatingName(pods []*Pod, name string) bool {
	for _, p := range pods {
		if p.Metadata.Name == name && p.Terminating() {
			return true
		}
	}
	return false
}

// syncStatefulSets plans and writes each StatefulSet, one transaction each.
func (c *Controllers) syncStatefulSets(ctx context.Context, s *snapshot, byOwner map[string][]*Pod, owners map[string]bool, budget *int, now time.Time) error {
	if len(s.statefulsets) == 0 {
		return nil
	}
	claims := map[string]map[string]bool{} // namespace -> claim names
	for _, cl := range s.claims {
		if claims[cl.Metadata.Namespace] == nil {
			claims[cl.Metadata.Namespace] = map[string]bool{}
		}
		claims[cl.Metadata.Namespace][cl.Metadata.Name] = cl.Metadata.DeletionTimestamp == nil
	}
	for _, sts := range s.statefulsets {
		owners[sts.Metadata.UID] = true
		plan, st := PlanStatefulSet(sts, byOwner[sts.Metadata.UID], claims[sts.Metadata.Namespace])
		c.limitStatefulSetCreates(sts, &plan, budget)
		if len(plan.Create)+len(plan.Delete)+len(plan.DeleteClaim)+len(plan.Claims) == 0 && JSONEqual(st, sts.Status) {
			continue
		}
		err := c.writeStatefulSet(ctx, sts, plan, st, now)
		if err != nil {
			return err
		}
	}
	return nil
}

// limitStatefulSetCreates bounds a StatefulSet's creates like the other
// workloads' (slow start, the pass's budget), and further so that the one
// transaction that makes them and their claims stays within BatchSize (a
// Parallel one of 3,000 replicas wrote 6,001 objects in one); the claims
// of the pods left for later passes wait with them.
func (c *Controllers) limitStatefulSetCreates(sts *StatefulSet, plan *StatefulSetPlan, budget *int) {
	planned := plan.Create
	tx := max(c.BatchSize/(1+len(sts.Spec.VolumeClaimTemplates)), 1)
	b := min(*budget, tx)
	left := b
	c.limitCreates(sts.Metadata.UID, &plan.Plan, &left)
	*budget -= b - left
	if len(plan.Create) == len(planned) {
		return
	}
	later := map[string]bool{}
	for _, p := range planned[len(plan.Create):] {
		i := sts.ordinal(p)
		for j := range sts.Spec.VolumeClaimTemplates {
			later[sts.ClaimName(&sts.Spec.VolumeClaimTemplates[j], i)] = true
		}
	}
	var claims []*PersistentVolumeClaim
	for _, cl := range plan.Claims {
		if !later[cl.Metadata.Name] {
			claims = append(claims, cl)
		}
	}
	plan.Claims = claims
}

func (c *Controllers) writeStatefulSet(ctx context.Context, sts *StatefulSet, plan StatefulSetPlan, st StatefulSetStatus, now time.Time) error {
	return c.updateObject(ctx, sts, func(tx Tx, cur Object) error {
		// Deletes first: a failed pod goes, and its namesake is made in
		// the same transaction.
		if err := c.applyPlan(tx, Plan{Delete: plan.Delete}, now); err != nil {
			return err
		}
		for _, cl := range plan.Claims {
			if _, err := tx.Get(KeyOf(cl)); ErrorCode(err) == ENOTFOUND {
				if err := tx.Create(cl); err != nil {
					return err
				}
			} else if err != nil {
				return err
			}
		}
		for _, p := range plan.Create {
			if _, err := tx.Get(KeyOf(p)); err == nil {
				continue // its namesake is still stopping: next pass
			} else if ErrorCode(err) != ENOTFOUND {
				return err
			}
			if err := tx.Create(p); err != nil {
				return err
			}
		}
		for _, name := range plan.DeleteClaim {
			obj, err := tx.Get(Key{Kind: KindPersistentVolumeClaim, Namespace: sts.Metadata.Namespace, Name: name})
			if ErrorCode(err) == ENOTFOUND {
				continue
			} else if err != nil {
				return err
			}
			if err := deleteClaim(tx, obj.(*PersistentVolumeClaim), now); err != nil {
				return err
			}
		}
		if JSONEqual(st, cur.(*StatefulSet).Status) {
			return nil
		}
		next := Clone(cur.(*StatefulSet))
		next.Status = st
		return tx.Put(next)
	})
}

func validateStatefulSet(s *StatefulSet) error {
	var pr problems
	if s.Spec.Replicas != nil && (*s.Spec.Replicas < 0 || *s.Spec.Replicas > MaxReplicas) {
		pr.add(invalid("spec.replicas", "%d must be between 0 and %d", *s.Spec.Replicas, MaxReplicas))
	}
	if o := s.Spec.Ordinals; o != nil && o.Start < 0 {
		pr.add(invalid("spec.ordinals.start", "must be >= 0"))
	}
	if last := s.PodName(s.start() + max(s.DesiredReplicas()-1, 0)); len(last) > 63 {
		pr.add(invalid("metadata.name", "%q is too long: its pods' names (%s) must fit 63 characters", s.Metadata.Name, last))
	}
	switch s.Spec.PodManagementPolicy {
	case PodManagementOrderedReady, PodManagementParallel:
	default:
		pr.add(invalid("spec.podManagementPolicy", "%q: must be OrderedReady or Parallel", s.Spec.PodManagementPolicy))
	}
	switch u := s.Spec.UpdateStrategy; u.Type {
	case StatefulSetRollingUpdate:
		if ru := u.RollingUpdate; ru != nil && ru.Partition != nil && *ru.Partition < 0 {
			pr.add(invalid("spec.updateStrategy.rollingUpdate.partition", "must be >= 0"))
		}
		if ru := u.RollingUpdate; ru != nil && ru.MaxUnavailable != nil {
			if n, err := ru.MaxUnavailable.Scaled(100, true); err != nil || n < 1 {
				pr.add(invalid("spec.updateStrategy.rollingUpdate.maxUnavailable", "must be a positive number or percentage"))
			}
		}
	case StatefulSetOnDelete:
		if u.RollingUpdate != nil {
			pr.add(invalid("spec.updateStrategy.rollingUpdate", "may not be set when the type is OnDelete"))
		}
	default:
		pr.add(invalid("spec.updateStrategy.type", "%q: must be RollingUpdate or OnDelete", u.Type))
	}
	if p := s.Spec.PersistentVolumeClaimRetentionPolicy; p != nil {
		for field, v := range map[string]string{"whenDeleted": p.WhenDeleted, "whenScaled": p.WhenScaled} {
			if v != "" && v != ReclaimRetain && v != ReclaimDelete {
				pr.add(invalid("spec.persistentVolumeClaimRetentionPolicy."+field, "%q: must be Retain or Delete", v))
			}
		}
	}
	if s.Spec.ServiceName != "" {
		pr.add(validateDNSLabel("spec.serviceName", s.Spec.ServiceName))
	}
	names := map[string]bool{}
	for i := range s.Spec.VolumeClaimTemplates {
		t := &s.Spec.VolumeClaimTemplates[i]
		p := fmt.Sprintf("spec.volumeClaimTemplates[%d]", i)
		pr.add(validateDNSLabel(p+".metadata.name", t.Metadata.Name))
		if names[t.Metadata.Name] {
			pr.add(invalid(p+".metadata.name", "duplicate claim template %q", t.Metadata.Name))
		}
		names[t.Metadata.Name] = true
		if err := validateClaim(t); err != nil {
			var claim problems
			claim.add(err)
			for _, msg := range claim.list {
				pr.add(Errorf(EINVALID, "%s.%s", p, msg))
			}
		}
	}
	// The template is checked with the claim templates' volumes, which
	// its containers mount by name.
	tmpl := s.Spec.Template
	for _, v := range s.claimTemplateVolumes(-1) {
		if slicesContainsVolume(tmpl.Spec.Volumes, v.Name) {
			pr.add(invalid("spec.template.spec.volumes", "%q is also a volumeClaimTemplate", v.Name))
		}
		v.PersistentVolumeClaim.ClaimName = v.Name
		tmpl.Spec.Volumes = append(append([]Volume(nil), tmpl.Spec.Volumes...), v)
	}
	pr.add(validateTemplate(s.Spec.Selector, &tmpl))
	return pr.err()
}

func defaultStatefulSet(s *StatefulSet) {
	if s.Spec.Replicas == nil {
		one := int32(1)
		s.Spec.Replicas = &one
	}
	if s.Spec.PodManagementPolicy == "" {
		s.Spec.PodManagementPolicy = PodManagementOrderedReady
	}
	if s.Spec.UpdateStrategy.Type == "" {
		s.Spec.UpdateStrategy.Type = StatefulSetRollingUpdate
	}
	for i := range s.Spec.VolumeClaimTemplates {
		t := &s.Spec.VolumeClaimTemplates[i]
		t.Status = PersistentVolumeClaimStatus{} // exported manifests carry one
		if t.Spec.VolumeMode == "" {
			t.Spec.VolumeMode = "Filesystem"
		}
	}
	defaultPodSpec(&s.Spec.Template.Spec)
}
