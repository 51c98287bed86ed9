package core

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Kind names an object type as it appears in manifests ("Deployment").
type Kind string

const (
	KindNamespace   Kind = "Namespace"
	KindNode        Kind = "Node"
	KindPod         Kind = "Pod"
	KindDeployment  Kind = "Deployment"
	KindDaemonSet   Kind = "DaemonSet"
	KindStatefulSet Kind = "StatefulSet"
	KindService     Kind = "Service"
	KindEndpoints   Kind = "Endpoints"
	KindConfigMap   Kind = "ConfigMap"
	KindSecret      Kind = "Secret"

	KindPersistentVolumeClaim Kind = "PersistentVolumeClaim"
	KindPersistentVolume      Kind = "PersistentVolume"
	KindStorageClass          Kind = "StorageClass"
)

// Kinds lists every kind the API serves, in the order apply creates them.
var Kinds = []Kind{KindNamespace, KindNode, KindConfigMap, KindSecret, KindStorageClass, KindPersistentVolume, KindPersistentVolumeClaim, KindService, KindEndpoints, KindDeployment, KindDaemonSet, KindStatefulSet, KindCronJob, KindJob, KindPod, KindEvent,
	KindServiceAccount, KindRole, KindRoleBinding, KindClusterRole, KindClusterRoleBinding,
	KindIngress, KindNetworkPolicy, KindPodDisruptionBudget, KindHorizontalPodAutoscaler}

// Namespaced reports whether objects of kind k live in a namespace.
func (k Kind) Namespaced() bool {
	return k != KindNode && k != KindNamespace && k != KindClusterRole && k != KindClusterRoleBinding &&
		k != KindPersistentVolume && k != KindStorageClass
}

// APIVersion returns the apiVersion that manifests use for kind k.
func (k Kind) APIVersion() string {
	if k == KindDeployment || k == KindDaemonSet || k == KindStatefulSet {
		return "apps/v1"
	}
	if k == KindJob || k == KindCronJob {
		return "batch/v1"
	}
	if i, ok := inertKinds[k]; ok {
		return i.apiVersion
	}
	if k == KindStorageClass {
		return "storage.k8s.io/v1"
	}
	return "v1"
}

// Plural returns the lower-case plural used in API paths ("deployments").
func (k Kind) Plural() string {
	if k == KindEndpoints {
		return "endpoints"
	}
	switch k {
	case KindStorageClass:
		return "storageclasses"
	case KindIngress:
		return "ingresses"
	case KindNetworkPolicy:
		return "networkpolicies"
	}
	return strings.ToLower(string(k)) + "s"
}

// ParseKind resolves the plural, singular and short names that kubectl users
// type ("po", "deploy", "svc") to a Kind.
func ParseKind(s string) (Kind, error) {
	switch strings.ToLower(s) {
	case "namespaces", "namespace", "ns":
		return KindNamespace, nil
	case "nodes", "node", "no":
		return KindNode, nil
	case "pods", "pod", "po":
		return KindPod, nil
	case "deployments", "deployment", "deploy":
		return KindDeployment, nil
	case "daemonsets", "daemonset", "ds":
		return KindDaemonSet, nil
	case "statefulsets", "statefulset", "sts":
		return KindStatefulSet, nil
	case "services", "service", "svc":
		return KindService, nil
	case "events", "event", "ev":
		return KindEvent, nil
	case "endpoints", "ep":
		return KindEndpoints, nil
	case "configmaps", "configmap", "cm":
		return KindConfigMap, nil
	case "serviceaccounts", "serviceaccount", "sa":
		return KindServiceAccount, nil
	case "roles", "role":
		return KindRole, nil
	case "rolebindings", "rolebinding":
		return KindRoleBinding, nil
	case "clusterroles", "clusterrole":
		return KindClusterRole, nil
	case "clusterrolebindings", "clusterrolebinding":
		return KindClusterRoleBinding, nil
	case "secrets", "secret":
		return KindSecret, nil
	case "persistentvolumeclaims", "persistentvolumeclaim", "pvc":
		return KindPersistentVolumeClaim, nil
	case "persistentvolumes", "persistentvolume", "pv":
		return KindPersistentVolume, nil
	case "storageclasses", "storageclass", "sc":
		return KindStorageClass, nil
	case "ingresses", "ingress", "ing":
		return KindIngress, nil
	case "networkpolicies", "networkpolicy", "netpol":
		return KindNetworkPolicy, nil
	case "poddisruptionbudgets", "poddisruptionbudget", "pdb":
		return KindPodDisruptionBudget, nil
	case "horizontalpodautoscalers", "horizontalpodautoscaler", "hpa":
		return KindHorizontalPodAutoscaler, nil
	case "jobs", "job":
		return KindJob, nil
	case "cronjobs", "cronjob", "cj":
		return KindCronJob, nil
	}
	return "", Errorf(EINVALID, "unknown resource type %q (use nodes, pods, deployments, daemonsets, statefulsets, jobs, cronjobs, services, endpoints, configmaps, secrets, persistentvolumeclaims, persistentvolumes, storageclasses, events or namespaces)", s)
}

// TypeMeta carries apiVersion and kind, as in every Kubernetes object.
type TypeMeta struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       Kind   `json:"kind,omitempty"`
}

// ObjectMeta is the metadata every object carries. Fields tagged
// edge:"server" are set by the master; apply ignores them in manifests.
type ObjectMeta struct {
	Name              string            `json:"name,omitempty"`
	Namespace         string            `json:"namespace,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	GenerateName      string            `json:"generateName,omitempty" edge:"nomanifest"`
	UID               string            `json:"uid,omitempty" edge:"server"`
	ResourceVersion   string            `json:"resourceVersion,omitempty" edge:"server"`
	Generation        int64             `json:"generation,omitempty" edge:"server"`
	CreationTimestamp *Time             `json:"creationTimestamp,omitempty" edge:"server"`
	DeletionTimestamp *Time             `json:"deletionTimestamp,omitempty" edge:"server"`
	OwnerReferences   []OwnerReference  `json:"ownerReferences,omitempty" edge:"nomanifest"`
	// Finalizers in an exported manifest are ignored: claims in use are
	// protected here without them.
	Finalizers []string `json:"finalizers,omitempty" edge:"server"`

	// warnings are what decoding the manifest had to say (ignored status,
	// an old apiVersion); apply reports them. Never stored.
	warnings []string
}

// OwnerReference ties a pod to the controller that made it.
type OwnerReference struct {
	APIVersion string `json:"apiVersion"`
	Kind       Kind   `json:"kind"`
	Name       string `json:"name"`
	UID        string `json:"uid"`
	Controller bool   `json:"controller,omitempty"`
}

// Object is implemented by every API object.
type Object interface {
	GetTypeMeta() *TypeMeta
	GetMeta() *ObjectMeta
}

// Key identifies an object.
type Key struct {
	Kind      Kind
	Namespace string
	Name      string
}

func (k Key) String() string {
	name := strings.ToLower(string(k.Kind)) + " " + strconv.Quote(k.Name)
	if k.Namespace != "" && k.Namespace != DefaultNamespace {
		name += " in namespace " + strconv.Quote(k.Namespace)
	}
	return name
}

// KeyOf returns the key of obj.
func KeyOf(obj Object) Key {
	m := obj.GetMeta()
	return Key{Kind: obj.GetTypeMeta().Kind, Namespace: m.Namespace, Name: m.Name}
}

// DefaultNamespace is used when a manifest names none.
const DefaultNamespace = "default"

// NewObject returns an empty object of kind k with its TypeMeta set.
func NewObject(k Kind) (Object, error) {
	var o Object
	switch k {
	case KindNamespace:
		o = &Namespace{}
	case KindNode:
		o = &Node{}
	case KindPod:
		o = &Pod{}
	case KindDeployment:
		o = &Deployment{}
	case KindDaemonSet:
		o = &DaemonSet{}
	case KindStatefulSet:
		o = &StatefulSet{}
	case KindService:
		o = &Service{}
	case KindEvent:
		o = &EventObj{}
	case KindEndpoints:
		o = &Endpoints{}
	case KindConfigMap:
		o = &ConfigMap{}
	case KindServiceAccount, KindRole, KindRoleBinding, KindClusterRole, KindClusterRoleBinding,
		KindIngress, KindNetworkPolicy, KindPodDisruptionBudget, KindHorizontalPodAutoscaler:
		o = &InertObject{}
	case KindSecret:
		o = &Secret{}
	case KindPersistentVolumeClaim:
		o = &PersistentVolumeClaim{}
	case KindPersistentVolume:
		o = &PersistentVolume{}
	case KindStorageClass:
		o = &StorageClass{}
	case KindJob:
		o = &Job{}
	case KindCronJob:
		o = &CronJob{}
	default:
		return nil, Errorf(EINVALID, "unknown kind %q", k)
	}
	*o.GetTypeMeta() = TypeMeta{APIVersion: k.APIVersion(), Kind: k}
	return o, nil
}

// DecodeObject decodes the JSON of a stored or transported object of kind k.
func DecodeObject(k Kind, data []byte) (Object, error) {
	o, err := NewObject(k)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, o); err != nil {
		return nil, fmt.Errorf("decode %s: %w", k, err)
	}
	*o.GetTypeMeta() = TypeMeta{APIVersion: k.APIVersion(), Kind: k}
	return o, nil
}

// Clone returns a deep copy of obj.
func Clone[T Object](obj T) T {
	b, err := json.Marshal(obj)
	if err != nil {
		panic(err) // our own types always marshal
	}
	c, err := DecodeObject(obj.GetTypeMeta().Kind, b)
	if err != nil {
		panic(err)
	}
	return c.(T)
}

// Time is a timestamp serialised like Kubernetes' metav1.Time (RFC 3339,
// seconds precision, UTC).
type Time struct{ time.Time }

// NewTime returns t truncated to seconds.
func NewTime(t time.Time) *Time { return &Time{t.UTC().Truncate(time.Second)} }

func (t Time) MarshalJSON() ([]byte, error) {
	return json.Marshal(t.UTC().Format(time.RFC3339))
}

func (t *Time) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return err
	}
	t.Time = v
	return nil
}

// IntOrString holds either an integer or a string ("25%", "http").
type IntOrString struct {
	IsString bool
	IntVal   int32
	StrVal   string
}

func IntOrStr(s string) IntOrString { return IntOrString{IsString: true, StrVal: s} }
func IntOrInt(i int32) IntOrString  { return IntOrString{IntVal: i} }

func (v IntOrString) MarshalJSON() ([]byte, error) {
	if v.IsString {
		return json.Marshal(v.StrVal)
	}
	return json.Marshal(v.IntVal)
}

func (v *IntOrString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		v.IsString = true
		return json.Unmarshal(b, &v.StrVal)
	}
	v.IsString = false
	if err := json.Unmarshal(b, &v.IntVal); err != nil {
		return fmt.Errorf("must be an integer or a string")
	}
	return nil
}

func (v IntOrString) String() string {
	if v.IsString {
		return v.StrVal
	}
	return strconv.Itoa(int(v.IntVal))
}

// Scaled resolves v against total: an integer as is, "25%" as a share of
// total rounded up (roundUp) or down.
func (v IntOrString) Scaled(total int, roundUp bool) (int, error) {
	if !v.IsString {
		return int(v.IntVal), nil
	}
	s, ok := strings.CutSuffix(v.StrVal, "%")
	if !ok {
		return 0, fmt.Errorf("%q must be an integer or a percentage", v.StrVal)
	}
	p, err := strconv.Atoi(s)
	if err != nil || p < 0 {
		return 0, fmt.Errorf("%q is not a valid percentage", v.StrVal)
	}
	if roundUp {
		return (p*total + 99) / 100, nil
	}
	return p * total / 100, nil
}

// LabelSelector selects objects by labels: every pair of MatchLabels and
// every requirement of MatchExpressions.
type LabelSelector struct {
	MatchLabels      map[string]string          `json:"matchLabels,omitempty"`
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions,omitempty"`
}

// LabelSelectorRequirement is one expression: In and NotIn a set of
// values, Exists and DoesNotExist.
type LabelSelectorRequirement struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"`
	Values   []string `json:"values,omitempty"`
}

// Empty reports whether s selects by nothing.
func (s *LabelSelector) Empty() bool {
	return s == nil || (len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0)
}

// Matches reports whether labels satisfy the selector. A nil or empty
// selector matches nothing, as for Kubernetes workload selectors.
func (s *LabelSelector) Matches(labels map[string]string) bool {
	if s.Empty() || !MatchLabels(s.MatchLabels, labels) {
		return false
	}
	for _, r := range s.MatchExpressions {
		if r.Operator == "Gt" || r.Operator == "Lt" || !matchRequirement(r.Operator, r.Key, r.Values, labels) {
			return false // Gt and Lt are node selectors' only
		}
	}
	return true
}

// matchRequirement reports whether labels satisfy one requirement of a
// label or node selector: In, NotIn, Exists, DoesNotExist, and (node
// selectors) Gt and Lt on integer values. An unknown operator matches
// nothing.
func matchRequirement(op, key string, values []string, labels map[string]string) bool {
	v, has := labels[key]
	switch op {
	case "In":
		return has && slices.Contains(values, v)
	case "NotIn":
		return !has || !slices.Contains(values, v)
	case "Exists":
		return has
	case "DoesNotExist":
		return !has
	case "Gt", "Lt":
		if !has || len(values) != 1 {
			return false
		}
		n, err1 := strconv.ParseInt(v, 10, 64)
		want, err2 := strconv.ParseInt(values[0], 10, 64)
		return err1 == nil && err2 == nil && ((op == "Gt" && n > want) || (op == "Lt" && n < want))
	}
	return false
}

// validateSelector checks a label selector; required says an empty one is
// an error.
func validateSelector(p string, s *LabelSelector, required bool) error {
	if s.Empty() {
		if required {
			return invalid(p, "matchLabels or matchExpressions required")
		}
		return nil
	}
	var pr problems
	pr.add(validateLabels(p+".matchLabels", s.MatchLabels))
	for i, r := range s.MatchExpressions {
		rp := fmt.Sprintf("%s.matchExpressions[%d]", p, i)
		pr.add(validateLabels(rp+".key", map[string]string{r.Key: ""}))
		switch r.Operator {
		case "In", "NotIn":
			if len(r.Values) == 0 {
				pr.add(invalid(rp+".values", "required for %s", r.Operator))
			}
		case "Exists", "DoesNotExist":
			if len(r.Values) > 0 {
				pr.add(invalid(rp+".values", "must be empty for %s", r.Operator))
			}
		default:
			pr.add(invalid(rp+".operator", "%q: must be In, NotIn, Exists or DoesNotExist", r.Operator))
		}
	}
	return pr.err()
}

// MatchLabels reports whether labels carry every pair in want.
func MatchLabels(want, labels map[string]string) bool {
	for k, v := range want {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

// ParseSelector parses "k=v,k2=v2" (the -l flag) into a map.
func ParseSelector(s string) (map[string]string, error) {
	m := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return m, nil
	}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, Errorf(EINVALID, "label selector %q: want key=value pairs separated by commas", s)
		}
		m[k] = strings.TrimSpace(strings.TrimPrefix(v, "="))
	}
	return m, nil
}

// String renders the selector as kubectl does ("app=web,tier in (a,b)").
func (s *LabelSelector) String() string {
	if s == nil {
		return "<none>"
	}
	var parts []string
	keys := make([]string, 0, len(s.MatchLabels))
	for k := range s.MatchLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, k+"="+s.MatchLabels[k])
	}
	for _, r := range s.MatchExpressions {
		switch r.Operator {
		case "In", "NotIn":
			parts = append(parts, fmt.Sprintf("%s %s (%s)", r.Key, strings.ToLower(r.Operator), strings.Join(r.Values, ",")))
		case "Exists":
			parts = append(parts, r.Key)
		default:
			parts = append(parts, "!"+r.Key)
		}
	}
	return strings.Join(parts, ",")
}
