package core

import (
	"fmt"
	"slices"
	"strings"
)

// Local persistent volumes, the way rancher/local-path-provisioner gives
// them to k3s: a claim waits for its first pod; the scheduler places that
// pod on a node with room for the claim's storage request, and in the same
// transaction the claim gets a PersistentVolume that is a directory on that
// node (VolumeDir/pvc-UID_NAMESPACE_CLAIM), with node affinity to it. Every
// later pod using the claim goes to that node. A claim may also bind to a
// PersistentVolume applied by hand (hostPath or local), matched on storage
// class, access modes, size and selector, as Kubernetes binds static
// volumes.
//
// Every storage class is answered by this local provisioner: a manifest
// written for longhorn or rook still gets a directory on a node (with a
// warning), which is what a Pi at the edge has. A StorageClass object, when
// there is one of the claim's class, gives the reclaim policy (default
// Delete, as local-path's).

const (
	ReadWriteOnce    = "ReadWriteOnce"
	ReadOnlyMany     = "ReadOnlyMany"
	ReadWriteMany    = "ReadWriteMany"
	ReadWriteOncePod = "ReadWriteOncePod"

	ReclaimDelete = "Delete"
	ReclaimRetain = "Retain"

	ClaimPending = "Pending"
	ClaimBound   = "Bound"
	ClaimLost    = "Lost"

	VolumeAvailable = "Available"
	VolumeBound     = "Bound"
	VolumeReleased  = "Released"

	// DefaultStorageClass is the class a claim without one is given, as
	// k3s names its local-path class.
	DefaultStorageClass = "local-path"
	// LocalProvisioner marks volumes this cluster made (and may delete).
	LocalProvisioner = "edge.io/local-path"
	// AnnotationProvisionedBy is set on provisioned volumes, as Kubernetes.
	AnnotationProvisionedBy = "pv.kubernetes.io/provisioned-by"
	// NoProvisioner is the provisioner of classes of hand-made volumes.
	NoProvisioner = "kubernetes.io/no-provisioner"
	// ResourceStorage is the resource name of a claim's size and of a
	// node's capacity for local volumes.
	ResourceStorage = "storage"
	// ResourceEphemeralStorage is accepted in containers' resources (Helm
	// charts set it) and not enforced.
	ResourceEphemeralStorage = "ephemeral-storage"
)

var accessModes = []string{ReadWriteOnce, ReadOnlyMany, ReadWriteMany, ReadWriteOncePod}

// PersistentVolumeClaim asks for storage that outlives pods.
type PersistentVolumeClaim struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta                  `json:"metadata"`
	Spec     PersistentVolumeClaimSpec   `json:"spec"`
	Status   PersistentVolumeClaimStatus `json:"status,omitempty"`
}

func (c *PersistentVolumeClaim) GetTypeMeta() *TypeMeta { return &c.TypeMeta }
func (c *PersistentVolumeClaim) GetMeta() *ObjectMeta   { return &c.Metadata }

type PersistentVolumeClaimSpec struct {
	AccessModes      []string                   `json:"accessModes,omitempty"`
	Resources        VolumeResourceRequirements `json:"resources,omitempty"`
	StorageClassName *string                    `json:"storageClassName,omitempty"`
	// VolumeName binds the claim to that PersistentVolume; the binder sets
	// it. A manifest exported from another cluster may name a volume that
	// does not exist here: the claim is then provisioned under that name.
	VolumeName string         `json:"volumeName,omitempty"`
	VolumeMode string         `json:"volumeMode,omitempty"`
	Selector   *LabelSelector `json:"selector,omitempty"`
}

type VolumeResourceRequirements struct {
	Requests ResourceList `json:"requests,omitempty"`
	Limits   ResourceList `json:"limits,omitempty"`
}

type PersistentVolumeClaimStatus struct {
	Phase       string       `json:"phase,omitempty"`
	AccessModes []string     `json:"accessModes,omitempty"`
	Capacity    ResourceList `json:"capacity,omitempty"`
	Message     string       `json:"message,omitempty"`
}

// StorageClass returns the claim's class ("" only when it asks for none,
// which binds to volumes without a class).
func (c *PersistentVolumeClaim) StorageClass() string {
	if c.Spec.StorageClassName == nil {
		return DefaultStorageClass
	}
	return *c.Spec.StorageClassName
}

// Request returns the storage the claim asks for, in bytes (0: none said).
func (c *PersistentVolumeClaim) Request() int64 {
	v, _ := c.Spec.Resources.Requests[ResourceStorage].Value()
	return v
}

// Bound reports whether the claim has its volume.
func (c *PersistentVolumeClaim) Bound() bool {
	return c.Status.Phase == ClaimBound && c.Spec.VolumeName != ""
}

// PersistentVolume is storage a claim binds to: here always a directory on
// a node (hostPath or local).
type PersistentVolume struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta             `json:"metadata"`
	Spec     PersistentVolumeSpec   `json:"spec"`
	Status   PersistentVolumeStatus `json:"status,omitempty"`
}

func (v *PersistentVolume) GetTypeMeta() *TypeMeta { return &v.TypeMeta }
func (v *PersistentVolume) GetMeta() *ObjectMeta   { return &v.Metadata }

type PersistentVolumeSpec struct {
	Capacity                      ResourceList          `json:"capacity,omitempty"`
	AccessModes                   []string              `json:"accessModes,omitempty"`
	PersistentVolumeReclaimPolicy string                `json:"persistentVolumeReclaimPolicy,omitempty"`
	StorageClassName              string                `json:"storageClassName,omitempty"`
	VolumeMode                    string                `json:"volumeMode,omitempty"`
	HostPath                      *HostPathVolumeSource `json:"hostPath,omitempty"`
	Local                         *LocalVolumeSource    `json:"local,omitempty"`
	NodeAffinity                  *VolumeNodeAffinity   `json:"nodeAffinity,omitempty"`
	ClaimRef                      *ClaimReference       `json:"claimRef,omitempty"`
	// MountOptions are accepted with a warning: a directory on the node's
	// own filesystem has none.
	MountOptions []string `json:"mountOptions,omitempty"`
}

type LocalVolumeSource struct {
	Path   string  `json:"path"`
	FSType *string `json:"fsType,omitempty"`
}

type VolumeNodeAffinity struct {
	Required *NodeSelector `json:"required,omitempty"`
}

// ClaimReference is a PersistentVolume's claimRef, as Kubernetes writes it.
type ClaimReference struct {
	APIVersion      string `json:"apiVersion,omitempty"`
	Kind            string `json:"kind,omitempty"`
	Namespace       string `json:"namespace,omitempty"`
	Name            string `json:"name,omitempty"`
	UID             string `json:"uid,omitempty"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
	FieldPath       string `json:"fieldPath,omitempty"`
}

type PersistentVolumeStatus struct {
	Phase   string `json:"phase,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// Path returns the directory the volume is on its node.
func (v *PersistentVolume) Path() string {
	if v.Spec.Local != nil {
		return v.Spec.Local.Path
	}
	if v.Spec.HostPath != nil {
		return v.Spec.HostPath.Path
	}
	return ""
}

// Provisioned reports whether this cluster made the volume (its directory
// is the agent's to create and delete).
func (v *PersistentVolume) Provisioned() bool {
	return v.Metadata.Annotations[AnnotationProvisionedBy] == LocalProvisioner
}

// Capacity returns the volume's size in bytes.
func (v *PersistentVolume) Capacity() int64 {
	n, _ := v.Spec.Capacity[ResourceStorage].Value()
	return n
}

// FitsNode reports whether the volume is reachable from a node with these
// labels (no node affinity: from every node).
func (v *PersistentVolume) FitsNode(labels map[string]string) bool {
	a := v.Spec.NodeAffinity
	if a == nil || a.Required == nil || len(a.Required.NodeSelectorTerms) == 0 {
		return true
	}
	for _, t := range a.Required.NodeSelectorTerms {
		if t.Matches(labels) {
			return true
		}
	}
	return false
}

// StorageClass configures provisioning for the claims of its name. Only
// reclaimPolicy acts here; the provisioner is always the local one.
type StorageClass struct {
	TypeMeta             `json:",inline"`
	Metadata             ObjectMeta        `json:"metadata"`
	Provisioner          string            `json:"provisioner"`
	ReclaimPolicy        string            `json:"reclaimPolicy,omitempty"`
	VolumeBindingMode    string            `json:"volumeBindingMode,omitempty"`
	AllowVolumeExpansion *bool             `json:"allowVolumeExpansion,omitempty"`
	Parameters           map[string]string `json:"parameters,omitempty"`
	MountOptions         []string          `json:"mountOptions,omitempty"`
}

func (s *StorageClass) GetTypeMeta() *TypeMeta { return &s.TypeMeta }
func (s *StorageClass) GetMeta() *ObjectMeta   { return &s.Metadata }

type PersistentVolumeClaimVolumeSource struct {
	ClaimName string `json:"claimName"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
}

// ClaimNames returns the claims a pod's volumes use.
func (s *PodSpec) ClaimNames() []string {
	var out []string
	for _, v := range s.Volumes {
		if v.PersistentVolumeClaim != nil && !slices.Contains(out, v.PersistentVolumeClaim.ClaimName) {
			out = append(out, v.PersistentVolumeClaim.ClaimName)
		}
	}
	return out
}

// ProvisionedPath is where the agent with volume directory dir keeps a
// provisioned volume, as local-path-provisioner names them.
func ProvisionedPath(dir, volume string, claim *PersistentVolumeClaim) string {
	return strings.TrimRight(dir, "/") + "/" + volume + "_" + claim.Metadata.Namespace + "_" + claim.Metadata.Name
}

// ProvisionedName is the name of the volume provisioned for a claim.
func ProvisionedName(c *PersistentVolumeClaim) string {
	if c.Spec.VolumeName != "" {
		return c.Spec.VolumeName
	}
	return "pvc-" + c.Metadata.UID
}

// ClaimVolume tells an agent where a claim's data is on the node.
type ClaimVolume struct {
	Namespace string `json:"namespace"`
	Claim     string `json:"claim"`
	Volume    string `json:"volume"`
	Path      string `json:"path"`
	// Provisioned: the directory is the agent's (created 0777 like
	// local-path's); otherwise it is the user's hostPath or local path.
	Provisioned bool `json:"provisioned,omitempty"`
	ReadOnly    bool `json:"readOnly,omitempty"`
}

func validateAccessModes(path string, modes []string, required bool) error {
	if len(modes) == 0 && required {
		return invalid(path, "at least one of %s is required", strings.Join(accessModes, ", "))
	}
	for i, m := range modes {
		if !slices.Contains(accessModes, m) {
			return invalid(fmt.Sprintf("%s[%d]", path, i), "%q: must be one of %s", m, strings.Join(accessModes, ", "))
		}
	}
	return nil
}

func validateStorage(path string, list ResourceList, required bool) error {
	for name, q := range list {
		if name != ResourceStorage {
			return invalid(path+"."+name, "unsupported resource (only storage)")
		}
		if _, err := validQuantity(path+"."+name, q); err != nil {
			return err
		}
	}
	if required && list[ResourceStorage] == "" {
		return invalid(path+"."+ResourceStorage, "required")
	}
	return nil
}

func validateVolumeMode(path, mode string) error {
	if mode != "" && mode != "Filesystem" {
		return invalid(path, "%q: only Filesystem (a directory on the node) is supported", mode)
	}
	return nil
}

func validateClaim(c *PersistentVolumeClaim) error {
	var pr problems
	pr.add(validateAccessModes("spec.accessModes", c.Spec.AccessModes, true))
	pr.add(validateStorage("spec.resources.requests", c.Spec.Resources.Requests, true))
	pr.add(validateStorage("spec.resources.limits", c.Spec.Resources.Limits, false))
	pr.add(validateVolumeMode("spec.volumeMode", c.Spec.VolumeMode))
	if sc := c.Spec.StorageClassName; sc != nil && *sc != "" {
		pr.add(validateDNSSubdomain("spec.storageClassName", *sc))
	}
	if c.Spec.VolumeName != "" {
		pr.add(validateDNSSubdomain("spec.volumeName", c.Spec.VolumeName))
	}
	pr.add(validateSelector("spec.selector", c.Spec.Selector, false))
	return pr.err()
}

func validateVolume(v *PersistentVolume) error {
	var pr problems
	pr.add(validateAccessModes("spec.accessModes", v.Spec.AccessModes, true))
	pr.add(validateStorage("spec.capacity", v.Spec.Capacity, true))
	pr.add(validateVolumeMode("spec.volumeMode", v.Spec.VolumeMode))
	switch v.Spec.PersistentVolumeReclaimPolicy {
	case ReclaimDelete, ReclaimRetain:
	case "Recycle":
		pr.add(invalid("spec.persistentVolumeReclaimPolicy", "Recycle is deprecated in Kubernetes and not supported: use Delete or Retain"))
	default:
		pr.add(invalid("spec.persistentVolumeReclaimPolicy", "%q: must be Delete or Retain", v.Spec.PersistentVolumeReclaimPolicy))
	}
	if v.Spec.StorageClassName != "" {
		pr.add(validateDNSSubdomain("spec.storageClassName", v.Spec.StorageClassName))
	}
	switch {
	case v.Spec.HostPath != nil && v.Spec.Local != nil:
		pr.add(invalid("spec", "only one of hostPath or local may be set"))
	case v.Spec.HostPath != nil:
		if !strings.HasPrefix(v.Spec.HostPath.Path, "/") {
			pr.add(invalid("spec.hostPath.path", "%q must be an absolute path", v.Spec.HostPath.Path))
		}
		switch v.Spec.HostPath.Type {
		case "", "Directory", "DirectoryOrCreate":
		default:
			pr.add(invalid("spec.hostPath.type", "%q: a persistent volume is a directory (Directory or DirectoryOrCreate)", v.Spec.HostPath.Type))
		}
	case v.Spec.Local != nil:
		if !strings.HasPrefix(v.Spec.Local.Path, "/") {
			pr.add(invalid("spec.local.path", "%q must be an absolute path", v.Spec.Local.Path))
		}
		if a := v.Spec.NodeAffinity; a == nil || a.Required == nil || len(a.Required.NodeSelectorTerms) == 0 {
			pr.add(invalid("spec.nodeAffinity.required", "a local volume must say which node holds it (as Kubernetes requires)"))
		}
	default:
		pr.add(invalid("spec", "one of hostPath or local is required (volumes here are directories on a node: nfs, iscsi, csi and cloud disks are not supported)"))
	}
	if a := v.Spec.NodeAffinity; a != nil && a.Required != nil {
		if err := validateAffinity("spec", &Affinity{NodeAffinity: &NodeAffinity{Required: a.Required}}); err != nil {
			// Name the field as it is spelt in a PersistentVolume.
			pr.add(Errorf(EINVALID, "%s", strings.Replace(ErrorMessage(err), "spec.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution", "spec.nodeAffinity.required", 1)))
		}
	}
	if r := v.Spec.ClaimRef; r != nil {
		if r.Name == "" {
			pr.add(invalid("spec.claimRef.name", "required"))
		}
		if r.Kind != "" && r.Kind != string(KindPersistentVolumeClaim) {
			pr.add(invalid("spec.claimRef.kind", "%q: must be PersistentVolumeClaim", r.Kind))
		}
	}
	return pr.err()
}

func validateStorageClass(s *StorageClass) error {
	var pr problems
	if s.Provisioner == "" {
		pr.add(invalid("provisioner", "required"))
	}
	switch s.ReclaimPolicy {
	case ReclaimDelete, ReclaimRetain:
	default:
		pr.add(invalid("reclaimPolicy", "%q: must be Delete or Retain", s.ReclaimPolicy))
	}
	switch s.VolumeBindingMode {
	case "Immediate", "WaitForFirstConsumer":
	default:
		pr.add(invalid("volumeBindingMode", "%q: must be Immediate or WaitForFirstConsumer", s.VolumeBindingMode))
	}
	return pr.err()
}

// volumeWarnings names what a claim, volume or class asks for that a
// directory on a node does not give.
func volumeWarnings(obj Object) []string {
	var w []string
	switch o := obj.(type) {
	case *PersistentVolumeClaim:
		if sc := o.StorageClass(); sc != DefaultStorageClass && sc != "" && sc != "local-storage" && sc != "manual" {
			w = append(w, fmt.Sprintf("spec.storageClassName: %q is answered by this cluster's local provisioner: a directory on the node that first runs a pod using the claim, unless a PersistentVolume of that class is applied", sc))
		}
		for _, m := range o.Spec.AccessModes {
			if m == ReadWriteMany || m == ReadOnlyMany {
				w = append(w, fmt.Sprintf("spec.accessModes: %s: a local volume is on one node; every pod using the claim runs there", m))
				break
			}
		}
		if len(o.Spec.Resources.Limits) > 0 {
			w = append(w, "spec.resources.limits: not enforced; a local volume may grow past its request (the request counts against the node's storage capacity)")
		}
	case *PersistentVolume:
		if len(o.Spec.MountOptions) > 0 {
			w = append(w, "spec.mountOptions: ignored; the volume is a directory bind-mounted into the pod")
		}
		if o.Spec.Local != nil && o.Spec.Local.FSType != nil {
			w = append(w, "spec.local.fsType: ignored; the path is used as a directory")
		}
	case *StorageClass:
		if o.Provisioner != LocalProvisioner && o.Provisioner != "rancher.io/local-path" && o.Provisioner != "kubernetes.io/no-provisioner" {
			w = append(w, fmt.Sprintf("provisioner: %q is not run here; this cluster's local provisioner answers claims of class %q", o.Provisioner, o.Metadata.Name))
		}
		if len(o.Parameters) > 0 {
			w = append(w, "parameters: ignored by the local provisioner")
		}
		if o.AllowVolumeExpansion != nil && *o.AllowVolumeExpansion {
			w = append(w, "allowVolumeExpansion: local volumes have no size to expand; a claim's request is what the node reserves for it")
		}
	}
	return w
}

// keepBinding carries the binder's choices (a claim's volumeName, a
// volume's claimRef) over a re-applied manifest that does not name them,
// and refuses what Kubernetes refuses once a claim is bound: any change but
// a larger request.
func keepBinding(old, in Object) error {
	switch o := old.(type) {
	case *PersistentVolumeClaim:
		c := in.(*PersistentVolumeClaim)
		if c.Spec.VolumeName == "" {
			c.Spec.VolumeName = o.Spec.VolumeName
		}
		if !o.Bound() {
			return nil
		}
		if c.Request() < o.Request() {
			return invalid("spec.resources.requests.storage", "%s is less than the bound claim's %s: a claim cannot shrink",
				c.Spec.Resources.Requests[ResourceStorage], o.Spec.Resources.Requests[ResourceStorage])
		}
		rest := c.Spec
		rest.Resources = o.Spec.Resources
		if !JSONEqual(rest, o.Spec) {
			return invalid("spec", "a bound claim's spec cannot change, except a larger resources.requests.storage; delete the claim and apply again")
		}
	case *PersistentVolume:
		v := in.(*PersistentVolume)
		if v.Spec.ClaimRef == nil {
			v.Spec.ClaimRef = o.Spec.ClaimRef
		}
		if o.Status.Phase == VolumeBound && (v.Path() != o.Path() || !JSONEqual(v.Spec.NodeAffinity, o.Spec.NodeAffinity)) {
			return invalid("spec", "the path and nodeAffinity of a bound volume cannot change; delete its claim first")
		}
	}
	return nil
}
