package core

import (
	"strings"
	"testing"
)

// FuzzDecodeManifests feeds arbitrary YAML through the whole manifest path
// (split, YAML, field check, defaults, validation). It must never panic,
// must refuse with an EINVALID error, and what it accepts must validate
// again and survive a JSON round trip unchanged.
func FuzzDecodeManifests(f *testing.F) {
	for _, s := range []string{
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: c, image: nginx, resources: {limits: {memory: 32Mi, cpu: 250m}}}]\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: NodePort, selector: {app: web}, ports: [{port: 80, nodePort: 30080}]}\n",
		"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: busybox, command: [sh, -c, 'sleep 1']}]}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shed}\n",
		"apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: c, image: x, livenessProbe: {httpGet: {port: http}}}]}\n",
		"kind: Deployment\n", "{}", "- a\n- b\n", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: x, resources: {limits: {memory: 1e99}}}]}\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 1000000}\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		objs, err := DecodeManifests([]ManifestFile{{Name: "f.yaml", Data: []byte(doc)}})
		if err != nil {
			if ErrorCode(err) != EINVALID || !strings.HasPrefix(err.Error(), "f.yaml") {
				t.Fatalf("refusal %v (code %s) does not name the file or is not EINVALID", err, ErrorCode(err))
			}
			return
		}
		for _, o := range objs {
			if err := Validate(o); err != nil {
				t.Fatalf("accepted object does not validate again: %v", err)
			}
			c := Clone(o)
			if !JSONEqual(c, o) {
				t.Fatalf("accepted object changes in a JSON round trip")
			}
		}
	})
}
