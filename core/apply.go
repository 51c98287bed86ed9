package core

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ApplyResult says what apply did to one object, kubectl style.
type ApplyResult struct {
	Kind   Kind   `json:"kind"`
	Name   string `json:"name"`
	Action string `json:"action"` // created, configured, unchanged, deleted
	// Warnings name accepted fields that have no effect yet.
	Warnings []string `json:"warnings,omitempty"`
	// DryRun is DryRunClient or DryRunServer when nothing was changed:
	// Action is what apply would do.
	DryRun string `json:"dryRun,omitempty"`
}

// Dry run modes, as kubectl names them.
const (
	DryRunClient = "client"
	DryRunServer = "server"
)

func (r ApplyResult) String() string {
	prefix := strings.ToLower(string(r.Kind))
	switch r.Kind.APIVersion() {
	case "apps/v1":
		prefix += ".apps"
	case "batch/v1":
		prefix += ".batch"
	}
	s := fmt.Sprintf("%s/%s %s", prefix, r.Name, r.Action)
	switch r.DryRun {
	case DryRunClient:
		s += " (dry run)"
	case DryRunServer:
		s += " (server dry run)"
	}
	return s
}

// Apply creates or updates objs (already decoded and validated) in one
// transaction: all of them or none. Server-set metadata and status in
// manifests are ignored. A namespace must exist or be applied in the same
// call.
//
// Services get their cluster IP and node ports from net's ranges here, in
// the same transaction, so a taken or out-of-range one is refused at once.
func Apply(ctx context.Context, s Store, objs []Object, now time.Time, net NetworkConfig) ([]ApplyResult, error) {
	objs = applyOrder(objs)
	var results []ApplyResult
	err := s.Update(ctx, func(tx Tx) (err error) {
		results, err = applyAll(tx, objs, net)
		return err
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// applyOrder returns a copy of objs in the order apply creates them
// (namespaces first, pods last), keeping the manifests' order within a kind.
func applyOrder(objs []Object) []Object {
	objs = append([]Object(nil), objs...)
	order := map[Kind]int{}
	for i, k := range Kinds {
		order[k] = i
	}
	sort.SliceStable(objs, func(i, j int) bool {
		return order[objs[i].GetTypeMeta().Kind] < order[objs[j].GetTypeMeta().Kind]
	})
	return objs
}

// applyAll applies objs, in order, within tx: Apply's and DryRunApply's
// one body, so a dry run answers exactly what the apply would.
func applyAll(tx Tx, objs []Object, net NetworkConfig) ([]ApplyResult, error) {
	results := make([]ApplyResult, 0, len(objs))
	for _, obj := range objs {
		r, err := applyOne(tx, obj, net)
		if err != nil {
			return nil, err
		}
		results = append(results, r)
	}
	return results, nil
}

func applyOne(tx Tx, in Object, net NetworkConfig) (ApplyResult, error) {
	obj := Clone(in)
	if s, ok := obj.(*Secret); ok { // stringData is write-only
		s.Data, s.StringData = s.Files(), nil
	}
	k := KeyOf(obj)
	res := ApplyResult{Kind: k.Kind, Name: k.Name, Warnings: Warnings(in)} // in: decoding's warnings are not cloned
	m := obj.GetMeta()
	if k.Kind.Namespaced() {
		if _, err := tx.Get(Key{Kind: KindNamespace, Name: m.Namespace}); ErrorCode(err) == ENOTFOUND {
			return res, Errorf(ENOTFOUND, "%s: namespace %q not found (create it first)", k, m.Namespace)
		} else if err != nil {
			return res, err
		}
	}
	old, err := tx.Get(k)
	if svc, ok := obj.(*Service); ok && (err == nil || ErrorCode(err) == ENOTFOUND) {
		var prev *Service
		if err == nil {
			prev = old.(*Service)
		}
		if aerr := allocateService(tx, svc, prev, net); aerr != nil {
			return res, prefixError(k, aerr)
		}
	}
	if ErrorCode(err) == ENOTFOUND {
		m.UID, m.ResourceVersion, m.Generation, m.CreationTimestamp, m.DeletionTimestamp, m.Finalizers = "", "", 0, nil, nil, nil
		resetStatus(obj)
		if err := tx.Create(obj); err != nil {
			return res, err
		}
		res.Action = "created"
		return res, nil
	} else if err != nil {
		return res, err
	}
	om := old.GetMeta()
	if om.DeletionTimestamp != nil {
		return res, Errorf(ECONFLICT, "%s is being deleted; apply again once it is gone", k)
	}
	if p, ok := obj.(*Pod); ok && p.Spec.NodeName == "" {
		p.Spec.NodeName = old.(*Pod).Spec.NodeName // the scheduler's, not the manifest's
	}
	if err := keepBinding(old, obj); err != nil {
		return res, prefixError(k, err)
	}
	if JSONEqual(SpecOf(old), SpecOf(obj)) && JSONEqual(om.Labels, m.Labels) && JSONEqual(om.Annotations, m.Annotations) {
		res.Action = "unchanged"
		return res, nil
	}
	if immutable(old) && !JSONEqual(SpecOf(old), SpecOf(obj)) {
		return res, Errorf(EINVALID, "%s is immutable: its data cannot change; delete it and apply again", k)
	}
	if j, ok := obj.(*Job); ok {
		if err := jobUpdateError(old.(*Job), j); err != nil {
			return res, prefixError(k, err)
		}
	}
	if k.Kind == KindPod && !JSONEqual(SpecOf(old), SpecOf(obj)) {
		return res, Errorf(EINVALID, "%s: spec: a pod's spec cannot change; delete the pod and apply again, or use a Deployment", k)
	}
	next := Clone(old)
	nm := next.GetMeta()
	nm.Labels, nm.Annotations = m.Labels, m.Annotations
	setSpec(next, obj)
	nm.ResourceVersion = om.ResourceVersion
	if err := tx.Put(next); err != nil {
		return res, err
	}
	res.Action = "configured"
	return res, nil
}

func immutable(o Object) bool {
	switch c := o.(type) {
	case *ConfigMap:
		return c.Immutable != nil && *c.Immutable
	case *Secret:
		return c.Immutable != nil && *c.Immutable
	case *StorageClass:
		return true // as in Kubernetes: make a new class instead
	}
	return false
}

// prefixError names the object in err's message, keeping its code.
func prefixError(k Key, err error) error {
	return Errorf(ErrorCode(err), "%s: %s", k, ErrorMessage(err))
}

func resetStatus(obj Object) {
	switch o := obj.(type) {
	case *Pod:
		o.Status = PodStatus{Phase: PodPending}
	case *Deployment:
		o.Status = DeploymentStatus{}
	case *DaemonSet:
		o.Status = DaemonSetStatus{}
	case *StatefulSet:
		o.Status = StatefulSetStatus{}
	case *Job:
		o.Status = JobStatus{}
	case *CronJob:
		o.Status = CronJobStatus{}
	case *Service:
		o.Status = ServiceStatus{}
	case *Namespace:
		o.Status = NamespaceStatus{Phase: "Active"}
	case *PersistentVolumeClaim:
		o.Status = PersistentVolumeClaimStatus{Phase: ClaimPending}
	case *PersistentVolume:
		o.Status = PersistentVolumeStatus{Phase: VolumeAvailable}
		if o.Spec.ClaimRef != nil {
			o.Spec.ClaimRef.UID, o.Spec.ClaimRef.ResourceVersion = "", "" // another cluster's
		}
	}
}

func setSpec(dst, src Object) {
	switch d := dst.(type) {
	case *Pod:
		d.Spec = src.(*Pod).Spec
	case *Deployment:
		d.Spec = src.(*Deployment).Spec
	case *DaemonSet:
		d.Spec = src.(*DaemonSet).Spec
	case *StatefulSet:
		d.Spec = src.(*StatefulSet).Spec
	case *Job:
		d.Spec = src.(*Job).Spec
	case *CronJob:
		d.Spec = src.(*CronJob).Spec
	case *Service:
		d.Spec = src.(*Service).Spec
	case *Endpoints:
		d.Subsets = src.(*Endpoints).Subsets
	case *InertObject:
		d.Body = src.(*InertObject).Body
	case *PersistentVolumeClaim:
		d.Spec = src.(*PersistentVolumeClaim).Spec
	case *PersistentVolume:
		d.Spec = src.(*PersistentVolume).Spec
	case *ConfigMap:
		c := src.(*ConfigMap)
		d.Data, d.BinaryData, d.Immutable = c.Data, c.BinaryData, c.Immutable
	case *Secret:
		c := src.(*Secret)
		d.Type, d.Data, d.StringData, d.Immutable = c.Type, c.Files(), nil, c.Immutable
	}
}

// Warnings lists what apply says of obj: what decoding its manifest
// ignored or read differently, and the accepted fields that this version
// does not act on, so users are told instead of surprised.
func Warnings(obj Object) []string {
	w := append([]string(nil), obj.GetMeta().warnings...)
	return append(w, fieldWarnings(obj)...)
}

func fieldWarnings(obj Object) []string {
	if k := obj.GetTypeMeta().Kind; k.Inert() {
		return []string{string(k) + ": " + inertKinds[k].why}
	}
	if s, ok := obj.(*Service); ok && s.Spec.LoadBalancerIP != "" {
		return []string{"spec.loadBalancerIP: ignored; like k3s' ServiceLB, the service answers on every node's address (status.loadBalancer.ingress)"}
	}
	if w := volumeWarnings(obj); w != nil {
		return w
	}
	spec, prefix := PodSpecOf(obj)
	if spec == nil {
		return nil
	}
	var w []string
	var annotations map[string]string
	switch o := obj.(type) {
	case *Pod:
		annotations = o.Metadata.Annotations
	case *Deployment:
		annotations = o.Spec.Template.Metadata.Annotations
	case *DaemonSet:
		annotations = o.Spec.Template.Metadata.Annotations
	case *StatefulSet:
		annotations = o.Spec.Template.Metadata.Annotations
	case *Job:
		annotations = o.Spec.Template.Metadata.Annotations
	case *CronJob:
		annotations = o.Spec.JobTemplate.Spec.Template.Metadata.Annotations
	}
	if ds, ok := obj.(*DaemonSet); ok {
		if ru := ds.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.MaxSurge != nil {
			if n, _ := ru.MaxSurge.Scaled(100, true); n > 0 {
				w = append(w, "spec.updateStrategy.rollingUpdate.maxSurge: not honoured; a node's pod is replaced stop-then-start, maxUnavailable nodes at a time")
			}
		}
	}
	if sts, ok := obj.(*StatefulSet); ok {
		if ru := sts.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.MaxUnavailable != nil {
			w = append(w, "spec.updateStrategy.rollingUpdate.maxUnavailable: not honoured; one pod is updated at a time")
		}
	}
	if spec.RuntimeClassName != "" {
		w = append(w, fmt.Sprintf("%s.runtimeClassName: ignored; every container runs with runc", prefix))
	}
	if d, ok := obj.(*Deployment); ok && d.Spec.ProgressDeadlineSeconds != nil {
		w = append(w, "spec.progressDeadlineSeconds: not acted on; a rollout waits for slow links instead of failing")
	}
	for _, f := range []struct {
		set       bool
		name, why string
	}{
		{spec.ServiceAccountName != "" && spec.ServiceAccountName != "default", "serviceAccountName", "there are no service accounts here; the pod gets no API token"},
		{spec.DeprecatedServiceAccount != "" && spec.DeprecatedServiceAccount != "default", "serviceAccount", "there are no service accounts here; the pod gets no API token"},
		{spec.AutomountServiceAccountToken != nil && *spec.AutomountServiceAccountToken, "automountServiceAccountToken", "no token is mounted: there is no service account API"},
		{spec.SchedulerName != "" && spec.SchedulerName != "default-scheduler", "schedulerName", "the master's scheduler places every pod"},
		{spec.PriorityClassName != "", "priorityClassName", "pods have no priority here"},
		{len(spec.ImagePullSecrets) > 0, "imagePullSecrets", "not used; registry credentials are configured on the master (--registries)"},
	} {
		if f.set {
			w = append(w, fmt.Sprintf("%s.%s: ignored; %s", prefix, f.name, f.why))
		}
	}
	w = append(w, lifecycleWarnings(prefix, spec)...)
	for i, c := range spec.Containers {
		if c.Resources.Requests[ResourceEphemeralStorage] != "" || c.Resources.Limits[ResourceEphemeralStorage] != "" {
			w = append(w, fmt.Sprintf("%s.containers[%d].resources: ephemeral-storage is not enforced or scheduled on; a container's disk use is not limited", prefix, i))
		}
		if c.Stdin || c.StdinOnce || c.TTY {
			w = append(w, fmt.Sprintf("%s.containers[%d]: stdin, stdinOnce and tty are ignored; nothing attaches to a container here (its output is in edgectl logs)", prefix, i))
		}
	}
	if d, ok := obj.(*Deployment); ok && d.Spec.MinReadySeconds > 0 {
		w = append(w, "spec.minReadySeconds: not enforced yet; a pod counts as available as soon as it is ready")
	}
	for i, v := range spec.Volumes {
		if e := v.EmptyDir; e != nil && (e.Medium != "" || e.SizeLimit != nil) {
			w = append(w, fmt.Sprintf("%s.volumes[%d].emptyDir: medium and sizeLimit are not enforced yet; the volume is a directory on the node's disk", prefix, i))
		}
	}
	if v, ok := annotations[AnnotationReconnectPolicy]; ok && v != ReconnectKeepOriginal && v != ReconnectKeepReplacement {
		w = append(w, fmt.Sprintf("annotation %s=%q is not %s or %s; %s applies", AnnotationReconnectPolicy, v, ReconnectKeepReplacement, ReconnectKeepOriginal, ReconnectKeepReplacement))
	}
	if v, ok := annotations[AnnotationNodeLostGrace]; ok {
		if n, err := strconv.Atoi(v); err != nil || n < 0 {
			w = append(w, fmt.Sprintf("annotation %s=%q is not a number of seconds; the cluster default applies", AnnotationNodeLostGrace, v))
		}
	}
	for i, c := range spec.Containers {
		p := fmt.Sprintf("%s.containers[%d]", prefix, i)
		if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil && c.LivenessProbe.HTTPGet.Scheme == "HTTPS" {
			w = append(w, p+".livenessProbe.httpGet.scheme: HTTPS probes do not verify certificates")
		}
	}
	if sts, ok := obj.(*StatefulSet); ok {
		for i := range sts.Spec.VolumeClaimTemplates {
			for _, cw := range volumeWarnings(&sts.Spec.VolumeClaimTemplates[i]) {
				w = append(w, fmt.Sprintf("spec.volumeClaimTemplates[%d].%s", i, cw))
			}
		}
	}
	return w
}

// Delete removes the object with key k. A pod bound to a node is marked
// terminating; its agent stops it and the record goes once the agent
// confirms. Deleting a workload lets the controllers terminate its pods;
// deleting a namespace deletes everything in it.
func Delete(ctx context.Context, s Store, k Key, now time.Time) error {
	return s.Update(ctx, func(tx Tx) error {
		obj, err := tx.Get(k)
		if err != nil {
			return err
		}
		switch k.Kind {
		case KindPod:
			return terminatePod(tx, obj.(*Pod), now)
		case KindPersistentVolumeClaim:
			return deleteClaim(tx, obj.(*PersistentVolumeClaim), now)
		case KindPersistentVolume:
			return deleteVolume(tx, obj.(*PersistentVolume), now)
		case KindNamespace:
			if k.Name == DefaultNamespace {
				return Errorf(EINVALID, "namespace %q cannot be deleted", k.Name)
			}
			for _, kind := range []Kind{KindDeployment, KindDaemonSet, KindStatefulSet, KindCronJob, KindJob, KindService, KindEndpoints, KindConfigMap, KindSecret,
				KindServiceAccount, KindRole, KindRoleBinding, KindIngress, KindNetworkPolicy, KindPodDisruptionBudget,
				KindHorizontalPodAutoscaler, KindPod, KindPersistentVolumeClaim} {
				objs, err := tx.List(kind, k.Name)
				if err != nil {
					return err
				}
				for _, o := range objs {
					if kind == KindPod {
						err = terminatePod(tx, o.(*Pod), now)
					} else {
						err = tx.Delete(KeyOf(o))
					}
					if err != nil {
						return err
					}
				}
			}
		}
		return tx.Delete(k)
	})
}

// terminatePod deletes an unbound pod at once and marks a bound one
// terminating, for its agent to stop gracefully.
func terminatePod(tx Tx, p *Pod, now time.Time) error {
	if p.Spec.NodeName == "" {
		return tx.Delete(KeyOf(p))
	}
	if _, err := tx.Get(Key{Kind: KindNode, Name: p.Spec.NodeName}); ErrorCode(err) == ENOTFOUND {
		return tx.Delete(KeyOf(p))
	}
	if p.Terminating() {
		return nil
	}
	c := Clone(p)
	c.Metadata.DeletionTimestamp = NewTime(now)
	return tx.Put(c)
}
