package core_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/core/coretest"
)

// Local persistent volumes: binding, provisioning at first use, scheduling
// by volume, protection and reclaim, on the memory store.

// volumeNode registers a node that provisions volumes under /vol/NAME
// with storage bytes of capacity.
func volumeNode(c *coretest.Cluster, name, storage string) {
	c.T.Helper()
	res := core.ResourceList{"cpu": "4", "memory": "4Gi", core.ResourceStorage: core.Quantity(storage)}
	c.Online(name, true)
	c.Report(&core.NodeReport{Node: name, Labels: map[string]string{core.LabelHostname: name, core.LabelArch: "arm64", core.LabelOS: "linux"},
		Status: core.NodeStatus{Capacity: res, Allocatable: res, VolumeDir: "/vol/" + name,
			Addresses: []core.NodeAddress{{Type: "InternalIP", Address: "192.168.9." + name[1:]}}}})
}

func claimYAML(name, size, extra string) string {
	return "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: " + name + "}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: " + size + "}}\n" + extra
}

// withClaim is a pod-spec fragment mounting claim at /data.
func withClaim(claim string) string {
	return "      volumes: [{name: data, persistentVolumeClaim: {claimName: " + claim + "}}]\n"
}

func getClaim(c *coretest.Cluster, name string) *core.PersistentVolumeClaim {
	c.T.Helper()
	return c.Get(core.Key{Kind: core.KindPersistentVolumeClaim, Namespace: "default", Name: name}).(*core.PersistentVolumeClaim)
}

func getVolume(c *coretest.Cluster, name string) (*core.PersistentVolume, bool) {
	c.T.Helper()
	o, err := c.Store.Get(ctx, core.Key{Kind: core.KindPersistentVolume, Name: name})
	if core.ErrorCode(err) == core.ENOTFOUND {
		return nil, false
	} else if err != nil {
		c.T.Fatal(err)
	}
	return o.(*core.PersistentVolume), true
}

// A claim waits for its first pod; the volume is made on the node that pod
// goes to, and every later pod using the claim follows it there.
func TestVolumes_ProvisionedWhereTheFirstPodGoes(t *testing.T) {
	c := newCluster(t)
	volumeNode(c, "n1", "10Gi")
	volumeNode(c, "n2", "10Gi")
	volumeNode(c, "n3", "10Gi")
	c.Apply(claimYAML("data", "1Gi", ""))
	c.Sync()
	claim := getClaim(c, "data")
	if claim.Status.Phase != core.ClaimPending || !strings.Contains(claim.Status.Message, "first consumer") {
		t.Fatalf("claim without pods: %+v", claim.Status)
	}
	c.Apply(deployment("db", 1, "      containers: [{name: c, image: demo:1, volumeMounts: [{name: data, mountPath: /data}]}]\n"+withClaim("data")))
	c.Sync()
	claim = getClaim(c, "data")
	if !claim.Bound() || claim.Spec.VolumeName != "pvc-"+claim.Metadata.UID {
		t.Fatalf("claim after its first pod: %+v %+v", claim.Spec, claim.Status)
	}
	pods := c.Active()
	if len(pods) != 1 || pods[0].Spec.NodeName == "" {
		t.Fatalf("pods %v", coretest.Names(pods))
	}
	node := pods[0].Spec.NodeName
	v, ok := getVolume(c, claim.Spec.VolumeName)
	if !ok {
		t.Fatal("no volume provisioned")
	}
	wantPath := "/vol/" + node + "/" + claim.Spec.VolumeName + "_default_data"
	if v.Path() != wantPath || !v.Provisioned() || v.Spec.PersistentVolumeReclaimPolicy != core.ReclaimDelete ||
		v.Status.Phase != core.VolumeBound || v.Spec.ClaimRef == nil || v.Spec.ClaimRef.UID != claim.Metadata.UID ||
		!v.FitsNode(map[string]string{core.LabelHostname: node}) || v.FitsNode(map[string]string{core.LabelHostname: "elsewhere"}) {
		t.Fatalf("volume %+v %+v", v.Spec, v.Status)
	}
	ds := c.Bus.Desired(node)
	if len(ds.Volumes) != 1 || ds.Volumes[0] != (core.ClaimVolume{Namespace: "default", Claim: "data", Volume: v.Metadata.Name, Path: wantPath, Provisioned: true}) {
		t.Fatalf("desired volumes of %s: %+v", node, ds.Volumes)
	}
	// Scaled up, against the spreading score: every replica goes where the data is.
	c.Apply(deployment("db", 4, "      containers: [{name: c, image: demo:1, volumeMounts: [{name: data, mountPath: /data}]}]\n"+withClaim("data")))
	c.Sync()
	if got := c.Placement(); got[node] != 4 {
		t.Fatalf("placement %v, want all 4 on %s", got, node)
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		if n != node && len(c.Bus.Desired(n).Volumes) != 0 {
			t.Fatalf("%s, which runs none of the claim's pods, was sent its volume", n)
		}
	}
}

// Claims placed in one pass share their node; storage requests count
// against each node's capacity, provisioned volumes included.
func TestVolumes_StorageCapacity(t *testing.T) {
	c := newCluster(t)
	volumeNode(c, "n1", "1Gi")
	volumeNode(c, "n2", "6Gi")
	c.Apply(claimYAML("big", "5Gi", ""))
	c.Apply(claimYAML("huge", "100Gi", ""))
	c.Apply(deployment("a", 1, withClaim("big")))
	c.Apply(deployment("b", 1, withClaim("huge")))
	c.Sync()
	for _, p := range c.Pods() {
		switch p.Metadata.Labels["app"] {
		case "a":
			if p.Spec.NodeName != "n2" {
				t.Fatalf("a 5Gi claim went to %q, want n2 (n1 holds 1Gi)", p.Spec.NodeName)
			}
		case "b":
			cond := p.Status.Condition("PodScheduled")
			if p.Spec.NodeName != "" || cond == nil || !strings.Contains(cond.Message, "2 didn't have enough storage") {
				t.Fatalf("a 100Gi claim: node %q, %+v", p.Spec.NodeName, cond)
			}
		}
	}
	// n2 has 1Gi left: a second 5Gi claim fits nowhere.
	c.Apply(claimYAML("more", "5Gi", ""))
	c.Apply(deployment("m", 1, withClaim("more")))
	c.Sync()
	for _, p := range c.Pods() {
		if p.Metadata.Labels["app"] == "m" && p.Spec.NodeName != "" {
			t.Fatalf("a claim beyond n2's remaining storage went to %s", p.Spec.NodeName)
		}
	}
	if getClaim(c, "more").Bound() || getClaim(c, "huge").Bound() {
		t.Fatal("a claim whose pod found no node was bound")
	}
}

// A pod whose claim does not exist waits, saying so.
func TestVolumes_MissingClaim(t *testing.T) {
	c := newCluster(t)
	volumeNode(c, "n1", "10Gi")
	c.Apply(deployment("web", 1, withClaim("nope")))
	c.Sync()
	p := c.Pods()[0]
	if cond := p.Status.Condition("PodScheduled"); p.Spec.NodeName != "" || cond == nil || cond.Message != `persistentvolumeclaim "nope" not found` {
		t.Fatalf("pod with a missing claim: node %q, %+v", p.Spec.NodeName, cond)
	}
	c.Apply(claimYAML("nope", "1Gi", ""))
	c.Sync()
	if p := c.Pods()[0]; p.Spec.NodeName != "n1" {
		t.Fatalf("once the claim exists the pod is placed: %q", p.Spec.NodeName)
	}
}

// A volume made by hand binds at once to a claim of its class that fits,
// the smallest first; a pod using it goes to the volume's node.
func TestVolumes_StaticBinding(t *testing.T) {
	c := newCluster(t)
	volumeNode(c, "n1", "10Gi")
	volumeNode(c, "n2", "10Gi")
	c.Apply(`apiVersion: v1
kind: PersistentVolume
metadata: {name: usb-big, labels: {disk: usb}}
spec:
  storageClassName: manual
  capacity: {storage: 100Gi}
  accessModes: [ReadWriteOnce]
  local: {path: /mnt/usb/big}
  nodeAffinity: {required: {nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [n2]}]}]}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: usb-small, labels: {disk: usb}}
spec:
  storageClassName: manual
  capacity: {storage: 2Gi}
  accessModes: [ReadWriteOnce]
  local: {path: /mnt/usb/small}
  nodeAffinity: {required: {nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [n2]}]}]}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: rwx-only}
spec:
  storageClassName: manual
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteMany]
  hostPath: {path: /srv/share}
`)
	c.Apply(claimYAML("media", "1Gi", "  storageClassName: manual\n"))
	c.Sync()
	claim := getClaim(c, "media")
	if !claim.Bound() || claim.Spec.VolumeName != "usb-small" || claim.Status.Capacity[core.ResourceStorage] != "2Gi" {
		t.Fatalf("claim bound to %q (%+v), want the smallest fitting RWO volume usb-small", claim.Spec.VolumeName, claim.Status)
	}
	if v, _ := getVolume(c, "usb-small"); v.Status.Phase != core.VolumeBound || v.Spec.ClaimRef.Name != "media" {
		t.Fatalf("volume %+v", v.Status)
	}
	c.Apply(deployment("jellyfin", 2, withClaim("media")))
	c.Sync()
	if got := c.Placement(); got["n2"] != 2 {
		t.Fatalf("placement %v, want both on n2 where the volume is", got)
	}
	if ds := c.Bus.Desired("n2"); len(ds.Volumes) != 1 || ds.Volumes[0].Path != "/mnt/usb/small" || ds.Volumes[0].Provisioned {
		t.Fatalf("desired volumes %+v", ds.Volumes)
	}
	// Re-applying the claim's manifest keeps the binding.
	if res := c.Apply(claimYAML("media", "1Gi", "  storageClassName: manual\n")); res[0].Action != "unchanged" || getClaim(c, "media").Spec.VolumeName != "usb-small" {
		t.Fatalf("re-apply: %v, volume %q", res, getClaim(c, "media").Spec.VolumeName)
	}
	objs, err := core.DecodeManifests([]core.ManifestFile{{Name: "c.yaml", Data: []byte(claimYAML("media", "512Mi", "  storageClassName: manual\n"))}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := core.Apply(ctx, c.Store, objs, c.Now(), c.Ctl.Network); err == nil || !strings.Contains(err.Error(), "cannot shrink") {
		t.Fatalf("shrinking a bound claim: %v", err)
	}
}

// Deleting a claim in use waits for its pods; then its provisioned volume
// is released, its node removes the directory, and the record goes only
// once the node no longer reports it.
func TestVolumes_ReclaimDelete(t *testing.T) {
	c := newCluster(t)
	volumeNode(c, "n1", "10Gi")
	c.Apply(claimYAML("data", "1Gi", ""))
	c.Apply(deployment("db", 1, withClaim("data")))
	c.Sync()
	c.Agent("n1")
	c.Sync()
	name := getClaim(c, "data").Spec.VolumeName
	claimKey := core.Key{Kind: core.KindPersistentVolumeClaim, Namespace: "default", Name: "data"}
	c.Delete(claimKey)
	c.Sync()
	if cl := getClaim(c, "data"); cl.Metadata.DeletionTimestamp == nil {
		t.Fatal("a claim in use was deleted at once")
	}
	// The node holds the directory, and says so.
	rep := &core.NodeReport{Node: "n1"}
	n := c.Node("n1")
	rep.Labels, rep.Status = n.Metadata.Labels, n.Status
	rep.Status.Volumes = []string{name}
	c.Report(rep)
	c.Delete(core.Key{Kind: core.KindDeployment, Namespace: "default", Name: "db"})
	c.Sync()
	c.Sync()
	c.AgentWith("n1", coretest.Running) // the pod's stop confirmed: it is gone from the desired state
	c.Sync()
	c.Sync()
	if _, err := c.Store.Get(ctx, claimKey); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("claim after its last pod went: %v", err)
	}
	v, ok := getVolume(c, name)
	if !ok || v.Status.Phase != core.VolumeReleased || v.Metadata.DeletionTimestamp == nil {
		t.Fatalf("volume after its claim went: %v %+v", ok, v)
	}
	ds := c.Bus.Desired("n1")
	if len(ds.Released) != 1 || ds.Released[0].Volume != name || ds.Released[0].Path != v.Path() {
		t.Fatalf("released volumes sent to n1: %+v", ds.Released)
	}
	c.Sync()
	if _, ok := getVolume(c, name); !ok {
		t.Fatal("the volume record went while its node still reports the directory")
	}
	n = c.Node("n1")
	rep = &core.NodeReport{Node: "n1", Labels: n.Metadata.Labels, Status: n.Status}
	rep.Status.Volumes = nil
	c.Report(rep)
	c.Sync()
	if _, ok := getVolume(c, name); ok {
		t.Fatal("the volume record stayed after its node removed the directory")
	}
	if ds := c.Bus.Desired("n1"); len(ds.Released) != 0 {
		t.Fatalf("still released: %+v", ds.Released)
	}
}

// A class with reclaimPolicy Retain keeps the data: the volume is Released
// and stays, and no node is told to remove anything.
func TestVolumes_ReclaimRetain(t *testing.T) {
	c := newCluster(t)
	volumeNode(c, "n1", "10Gi")
	res := c.Apply("apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: keep}\nprovisioner: rancher.io/local-path\nreclaimPolicy: Retain\nvolumeBindingMode: WaitForFirstConsumer\n")
	if len(res[0].Warnings) != 0 {
		t.Fatalf("warnings for a local-path class: %v", res[0].Warnings)
	}
	c.Apply(claimYAML("data", "1Gi", "  storageClassName: keep\n"))
	c.Apply("apiVersion: v1\nkind: Pod\nmetadata: {name: once}\nspec:\n  containers: [{name: c, image: demo:1}]\n" + strings.ReplaceAll(withClaim("data"), "      ", "  "))
	c.Sync()
	name := getClaim(c, "data").Spec.VolumeName
	if v, _ := getVolume(c, name); v == nil || v.Spec.PersistentVolumeReclaimPolicy != core.ReclaimRetain || v.Spec.StorageClassName != "keep" {
		t.Fatalf("volume %+v", v)
	}
	c.Delete(core.Key{Kind: core.KindPod, Namespace: "default", Name: "once"})
	c.Delete(core.Key{Kind: core.KindPersistentVolumeClaim, Namespace: "default", Name: "data"})
	c.Sync()
	c.Agent("n1")
	c.Sync()
	c.Sync()
	v, ok := getVolume(c, name)
	if !ok || v.Status.Phase != core.VolumeReleased || v.Metadata.DeletionTimestamp != nil {
		t.Fatalf("retained volume: %v %+v", ok, v)
	}
	if ds := c.Bus.Desired("n1"); len(ds.Released) != 0 {
		t.Fatalf("a retained volume was sent for removal: %+v", ds.Released)
	}
	// A new claim of the same name does not take the old data silently.
	c.Apply(claimYAML("data", "1Gi", "  storageClassName: keep\n"))
	c.Sync()
	if cl := getClaim(c, "data"); cl.Bound() {
		t.Fatalf("a new claim bound to a released volume: %s", cl.Spec.VolumeName)
	}
}

// A pod pinned with nodeName (past the scheduler) has its claim made on
// its node.
func TestVolumes_NodeNamePod(t *testing.T) {
	c := newCluster(t)
	volumeNode(c, "n1", "10Gi")
	volumeNode(c, "n2", "10Gi")
	c.Apply(claimYAML("z2m", "1Gi", ""))
	c.Apply(deployment("z2m", 1, "      nodeName: n2\n"+withClaim("z2m")))
	c.Sync()
	c.Sync()
	cl := getClaim(c, "z2m")
	v, ok := getVolume(c, cl.Spec.VolumeName)
	if !cl.Bound() || !ok || !strings.HasPrefix(v.Path(), "/vol/n2/") {
		t.Fatalf("claim %+v, volume %v %+v", cl.Status, ok, v)
	}
	if ds := c.Bus.Desired("n2"); len(ds.Volumes) != 1 {
		t.Fatalf("n2 desired volumes %+v", ds.Volumes)
	}
}

func TestVolumes_Validation(t *testing.T) {
	for _, tt := range []struct{ doc, msg string }{
		{"apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: a}\nspec:\n  resources: {requests: {storage: 1Gi}}\n", "spec.accessModes: at least one of"},
		{claimYAML("a", "1Gi", "  volumeMode: Block\n"), `spec.volumeMode: "Block": only Filesystem`},
		{"apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: a}\nspec:\n  accessModes: [ReadWriteOnce]\n", "spec.resources.requests.storage: required"},
		{"apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: a}\nspec:\n  accessModes: [ReadWriteSometimes]\n  resources: {requests: {storage: 1Gi}}\n", `spec.accessModes[0]: "ReadWriteSometimes"`},
		{"apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: a}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: lots}}\n", "spec.resources.requests.storage"},
		{"apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: a}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n  dataSource: {name: snap}\n", `unknown field "spec.dataSource"`},
		{"apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: a}\nspec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n  nfs: {server: nas, path: /x}\n", `unknown field "spec.nfs"`},
		{"apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: a}\nspec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n", "spec: one of hostPath or local is required"},
		{"apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: a}\nspec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n  local: {path: /mnt}\n", "spec.nodeAffinity.required: a local volume must say which node"},
		{"apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: a}\nspec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n  hostPath: {path: relative}\n", `spec.hostPath.path: "relative" must be an absolute path`},
		{"apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: a}\nspec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: Recycle\n  hostPath: {path: /x}\n", "Recycle is deprecated"},
		{"apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: a}\nspec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n  local: {path: /x}\n  nodeAffinity: {required: {nodeSelectorTerms: [{matchExpressions: [{key: k, operator: Near}]}]}}\n", `spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].operator: "Near"`},
		{coretest.DeploymentYAML("a", 1, "      volumes: [{name: d, persistentVolumeClaim: {}}]\n"), "spec.template.spec.volumes[0].persistentVolumeClaim.claimName: required"},
		{coretest.DeploymentYAML("a", 1, "      volumes: [{name: d, persistentVolumeClaim: {claimName: x}, emptyDir: {}}]\n"), "only one of hostPath, emptyDir, configMap, secret or persistentVolumeClaim"},
		{"apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: a}\nreclaimPolicy: Delete\n", "provisioner: required"},
		{"apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: a}\nprovisioner: x\nreclaimPolicy: Keep\n", `reclaimPolicy: "Keep"`},
	} {
		_, err := core.DecodeManifests([]core.ManifestFile{{Name: "v.yaml", Data: []byte(tt.doc)}})
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s\n  error %v, want %q", tt.doc, err, tt.msg)
		}
	}
}

// Exported manifests (status, finalizers, server metadata, a volumeName of
// another cluster) apply; a foreign storage class is answered locally,
// with a warning that says so.
func TestVolumes_ExportedClaim(t *testing.T) {
	c := newCluster(t)
	volumeNode(c, "n1", "10Gi")
	res := c.Apply(`apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: mosquitto
  finalizers: [kubernetes.io/pvc-protection]
  uid: 3ed33121-d300-4716-94c8-e901bd56aaa8
spec:
  accessModes: [ReadWriteMany]
  resources: {requests: {storage: 5Gi}}
  storageClassName: longhorn
  volumeMode: Filesystem
  volumeName: pvc-3ed33121-d300-4716-94c8-e901bd56aaa8
status:
  phase: Bound
  capacity: {storage: 5Gi}
`)
	if w := res[0].Warnings; len(w) != 3 || w[0] != "status: ignored; the cluster sets it" ||
		!strings.Contains(w[1], `"longhorn" is answered by this cluster's local provisioner`) || !strings.Contains(w[2], "ReadWriteMany") {
		t.Fatalf("warnings %q", w)
	}
	cl := getClaim(c, "mosquitto")
	if cl.Status.Phase != core.ClaimPending || len(cl.Metadata.Finalizers) != 0 || cl.Metadata.UID == "3ed33121-d300-4716-94c8-e901bd56aaa8" {
		t.Fatalf("exported claim stored as %+v %+v", cl.Metadata, cl.Status)
	}
	c.Apply(deployment("mosquitto", 1, withClaim("mosquitto")))
	c.Sync()
	cl = getClaim(c, "mosquitto")
	if v, ok := getVolume(c, "pvc-3ed33121-d300-4716-94c8-e901bd56aaa8"); !cl.Bound() || !ok || v.Spec.StorageClassName != "longhorn" ||
		!slices.Equal(v.Spec.AccessModes, []string{core.ReadWriteMany}) {
		t.Fatalf("claim %+v; volume %v %+v", cl.Status, ok, v)
	}
}
