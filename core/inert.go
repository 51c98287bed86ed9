package core

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Kinds accepted and stored without effect, so manifests that carry them
// (a Helm chart's ServiceAccount, an exporter's ClusterRole) apply
// unchanged; apply says they are not enforced.
const (
	KindServiceAccount     Kind = "ServiceAccount"
	KindRole               Kind = "Role"
	KindRoleBinding        Kind = "RoleBinding"
	KindClusterRole        Kind = "ClusterRole"
	KindClusterRoleBinding Kind = "ClusterRoleBinding"

	KindIngress                 Kind = "Ingress"
	KindNetworkPolicy           Kind = "NetworkPolicy"
	KindPodDisruptionBudget     Kind = "PodDisruptionBudget"
	KindHorizontalPodAutoscaler Kind = "HorizontalPodAutoscaler"
)

const rbacWhy = "stored, not enforced: there is no RBAC or service account API here (the admin token and node credentials are the access control)"

// inertKinds holds each inert kind's apiVersion and what apply says of it.
var inertKinds = map[Kind]struct{ apiVersion, why string }{
	KindServiceAccount:     {"v1", rbacWhy},
	KindRole:               {"rbac.authorization.k8s.io/v1", rbacWhy},
	KindRoleBinding:        {"rbac.authorization.k8s.io/v1", rbacWhy},
	KindClusterRole:        {"rbac.authorization.k8s.io/v1", rbacWhy},
	KindClusterRoleBinding: {"rbac.authorization.k8s.io/v1", rbacWhy},
	KindIngress: {"networking.k8s.io/v1", "stored, not served: there is no ingress controller here; " +
		"a Service of type LoadBalancer answers on every node's address (or use NodePort)"},
	KindNetworkPolicy:           {"networking.k8s.io/v1", "stored, NOT enforced: pods reach each other and the outside whatever it says"},
	KindPodDisruptionBudget:     {"policy/v1", "stored, not enforced: drain and rollouts do not wait for it"},
	KindHorizontalPodAutoscaler: {"autoscaling/v2", "stored, not acted on: there is no metrics API here; replicas stay as applied"},
}

// Inert reports whether objects of kind k are stored without effect.
func (k Kind) Inert() bool { _, ok := inertKinds[k]; return ok }

// InertObject is an object of an inert kind: its metadata checked like
// any object's, everything else kept as written.
type InertObject struct {
	TypeMeta
	Metadata ObjectMeta
	Body     map[string]json.RawMessage // the other top-level fields
}

func (o *InertObject) GetTypeMeta() *TypeMeta { return &o.TypeMeta }
func (o *InertObject) GetMeta() *ObjectMeta   { return &o.Metadata }

func (o *InertObject) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	if md, ok := m["metadata"]; ok {
		dec := json.NewDecoder(bytes.NewReader(md))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&o.Metadata); err != nil {
			return fmt.Errorf("metadata: %v", err)
		}
	}
	for _, f := range []struct {
		name string
		dst  any
	}{{"apiVersion", &o.APIVersion}, {"kind", &o.Kind}} {
		if v, ok := m[f.name]; ok {
			if err := json.Unmarshal(v, f.dst); err != nil {
				return fmt.Errorf("%s: %v", f.name, err)
			}
		}
	}
	delete(m, "apiVersion")
	delete(m, "kind")
	delete(m, "metadata")
	delete(m, "status")
	o.Body = m
	return nil
}

func (o *InertObject) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(o.Body)+3)
	for k, v := range o.Body {
		m[k] = v
	}
	m["apiVersion"], m["kind"], m["metadata"] = o.APIVersion, o.Kind, o.Metadata
	return json.Marshal(m)
}
