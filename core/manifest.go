package core

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// MaxDocumentSize bounds one manifest document (Kubernetes stores objects
// of at most 1.5 MiB): decoding YAML costs many times its size in memory,
// and the object goes to nodes in every desired state.
const MaxDocumentSize = 1536 << 10

// ManifestFile is one file of manifests as the user handed it to edgectl.
type ManifestFile struct {
	Name string `json:"name"`
	Data []byte `json:"data"`
}

// DecodeManifests decodes every document of every file into defaulted,
// validated objects. The first problem found is returned as an EINVALID
// error naming the file, the document and the field path; on error no
// objects are returned, so callers can apply all or nothing.
func DecodeManifests(files []ManifestFile) ([]Object, error) {
	var out []Object
	seen := map[Key]string{}
	for _, f := range files {
		docs := splitDocuments(f.Data)
		for i, doc := range docs {
			where := fmt.Sprintf("%s: document %d", f.Name, i+1)
			if len(docs) == 1 {
				where = f.Name
			}
			if len(doc) > MaxDocumentSize {
				return nil, Errorf(EINVALID, "%s: %d bytes, more than one object may hold (at most %d, as Kubernetes)", where, len(doc), MaxDocumentSize)
			}
			obj, err := DecodeManifest(doc)
			if err != nil {
				return nil, Errorf(EINVALID, "%s: %s", where, ErrorMessage(err))
			} else if obj == nil {
				continue // empty document
			}
			k := KeyOf(obj)
			if prev, ok := seen[k]; ok {
				return nil, Errorf(EINVALID, "%s: %s is defined twice (first in %s)", where, k, prev)
			}
			seen[k] = where
			out = append(out, obj)
		}
	}
	return out, nil
}

// splitDocuments splits a YAML stream on "---" separator lines.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		t := bytes.TrimRight(line, " \t\r\n")
		if bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- ")) {
			docs = append(docs, bytes.Clone(cur.Bytes()))
			cur.Reset()
			continue
		}
		cur.Write(line)
	}
	return append(docs, cur.Bytes())
}

// DecodeManifest decodes one YAML or JSON document. It returns nil, nil for
// an empty document.
func DecodeManifest(doc []byte) (Object, error) {
	if len(bytes.TrimSpace(stripComments(doc))) == 0 {
		return nil, nil
	}
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, Errorf(EINVALID, "not valid YAML: %v", err)
	}
	var raw any
	if err := json.Unmarshal(j, &raw); err != nil {
		return nil, Errorf(EINVALID, "not valid YAML: %v", err)
	}
	if raw == nil {
		return nil, nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, Errorf(EINVALID, "a manifest must be a mapping with apiVersion and kind")
	}
	kind, _ := m["kind"].(string)
	apiVersion, _ := m["apiVersion"].(string)
	if kind == "" {
		return nil, Errorf(EINVALID, "kind: required")
	}
	obj, err := NewObject(Kind(kind))
	if err != nil || Kind(kind) == KindNode || Kind(kind) == KindEvent {
		return nil, Errorf(EINVALID, "kind: %q is not supported (use Deployment, DaemonSet, StatefulSet, Job, CronJob, Pod, Service, Endpoints, ConfigMap, Secret, PersistentVolumeClaim, PersistentVolume, StorageClass or Namespace)", kind)
	}
	name := ""
	if md, ok := m["metadata"].(map[string]any); ok {
		name, _ = md["name"].(string)
	}
	what := fmt.Sprintf("%s %q", kind, name)
	var warnings []string
	want := Kind(kind).APIVersion()
	old, isOld := oldAPIVersions[Kind(kind)][apiVersion]
	switch {
	case apiVersion == want:
	case isOld:
		warnings = append(warnings, fmt.Sprintf("apiVersion %s: %s; read as %s", apiVersion, old, want))
		m["apiVersion"] = want
	default:
		return nil, Errorf(EINVALID, "%s: apiVersion %q is not supported for %s (use %s)", what, apiVersion, kind, want)
	}
	// Status in an exported manifest is the cluster's to set: dropped
	// unread (apply would reset it anyway).
	if _, ok := m["status"]; ok {
		delete(m, "status")
		warnings = append(warnings, "status: ignored; the cluster sets it")
	}
	if j, err = json.Marshal(m); err != nil {
		return nil, Errorf(EINVALID, "not valid YAML: %v", err)
	}
	// Every problem of the document in one error: the unknown fields and
	// what validation finds in the rest.
	var pr problems
	checkFields(raw, reflect.TypeOf(obj).Elem(), "", &pr)
	if err := json.Unmarshal(j, obj); err != nil {
		if len(pr.list) == 0 { // else checkFields said it, with the path
			pr.add(Errorf(EINVALID, "%v", err))
		}
		return nil, Errorf(EINVALID, "%s: %s", what, ErrorMessage(pr.err()))
	}
	meta := obj.GetMeta()
	if meta.Annotations[AnnotationProvisionedBy] == LocalProvisioner {
		// Only the cluster's own provisioner marks a volume whose
		// directory it may delete.
		delete(meta.Annotations, AnnotationProvisionedBy)
		warnings = append(warnings, fmt.Sprintf("metadata.annotations: %s=%s removed; only volumes this cluster provisions carry it", AnnotationProvisionedBy, LocalProvisioner))
	}
	if !Kind(kind).Namespaced() && meta.Namespace != "" {
		warnings = append(warnings, fmt.Sprintf("metadata.namespace: ignored; a %s is not namespaced", kind))
		meta.Namespace = ""
	}
	if isOld {
		warnings = append(warnings, readAsOld(obj, apiVersion)...)
	}
	warnings = append(warnings, fixRelativePaths(obj)...)
	meta.warnings = warnings
	SetDefaults(obj)
	pr.add(Validate(obj))
	if err := pr.err(); err != nil {
		return nil, Errorf(EINVALID, "%s: %s", what, ErrorMessage(err))
	}
	return obj, nil
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			b.Write(line)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

var unmarshalerType = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()

// checkFields walks a decoded JSON value alongside the Go type it will be
// decoded into and reports the path of the first field the type lacks.
// encoding/json's DisallowUnknownFields names the field but not its path,
// which is useless in a 60-line Deployment.
func checkFields(v any, t reflect.Type, path string, pr *problems) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v == nil {
		return
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		// A type with its own decoder (a quantity, an int-or-string):
		// decode the value alone, so a wrong one is named by its path.
		b, _ := json.Marshal(v)
		if err := json.Unmarshal(b, reflect.New(t).Interface()); err != nil {
			if path == "" {
				pr.add(err)
			} else {
				pr.add(fmt.Errorf("%s: %v", strings.TrimPrefix(path, "."), err))
			}
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			pr.add(fmt.Errorf("%s: expected a mapping, got %s", strings.TrimPrefix(path, "."), jsonKind(v)))
			return
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := path + "." + k
			f, ok := fields[k]
			switch {
			case !ok:
				pr.add(fmt.Errorf("unknown field %q", strings.TrimPrefix(p, ".")))
			case f.Tag.Get("edge") == "nomanifest":
				pr.add(fmt.Errorf("field %q is not supported in manifests", strings.TrimPrefix(p, ".")))
			default:
				checkFields(m[k], f.Type, p, pr)
			}
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return
		}
		s, ok := v.([]any)
		if !ok {
			pr.add(fmt.Errorf("%s: expected a list, got %s", strings.TrimPrefix(path, "."), jsonKind(v)))
			return
		}
		for i, e := range s {
			checkFields(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), pr)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			pr.add(fmt.Errorf("%s: expected a string, got %s (quote it: %q)", strings.TrimPrefix(path, "."), jsonText(v), jsonText(v)))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			pr.add(fmt.Errorf("%s: expected true or false, got %s", strings.TrimPrefix(path, "."), jsonText(v)))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		f, ok := v.(float64)
		if !ok {
			pr.add(fmt.Errorf("%s: expected a whole number, got %s", strings.TrimPrefix(path, "."), jsonText(v)))
		} else if f != float64(int64(f)) {
			pr.add(fmt.Errorf("%s: expected a whole number, got %v", strings.TrimPrefix(path, "."), f))
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			pr.add(fmt.Errorf("%s: expected a mapping", strings.TrimPrefix(path, ".")))
			return
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			checkFields(m[k], t.Elem(), path+"."+k, pr)
		}
	}
}

// jsonFields maps JSON names to struct fields, descending into embedded
// structs the way encoding/json does.
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			for k, v := range jsonFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f
	}
	return out
}

// oldAPIVersions are the beta apiVersions Kubernetes removed, still found
// in manifests written for older clusters (many Pi clusters are): read as
// the current version, with a warning. The schemas are the same for the
// fields this cluster knows but for the defaults readAsOld restores.
var oldAPIVersions = map[Kind]map[string]string{
	KindDeployment: {
		"extensions/v1beta1": "removed in Kubernetes 1.16", "apps/v1beta1": "removed in Kubernetes 1.16",
		"apps/v1beta2": "removed in Kubernetes 1.16"},
	KindDaemonSet:               {"extensions/v1beta1": "removed in Kubernetes 1.16", "apps/v1beta2": "removed in Kubernetes 1.16"},
	KindStatefulSet:             {"apps/v1beta1": "removed in Kubernetes 1.16", "apps/v1beta2": "removed in Kubernetes 1.16"},
	KindCronJob:                 {"batch/v1beta1": "removed in Kubernetes 1.25"},
	KindRole:                    {"rbac.authorization.k8s.io/v1beta1": "removed in Kubernetes 1.22"},
	KindRoleBinding:             {"rbac.authorization.k8s.io/v1beta1": "removed in Kubernetes 1.22"},
	KindClusterRole:             {"rbac.authorization.k8s.io/v1beta1": "removed in Kubernetes 1.22"},
	KindClusterRoleBinding:      {"rbac.authorization.k8s.io/v1beta1": "removed in Kubernetes 1.22"},
	KindIngress:                 {"extensions/v1beta1": "removed in Kubernetes 1.22", "networking.k8s.io/v1beta1": "removed in Kubernetes 1.22"},
	KindPodDisruptionBudget:     {"policy/v1beta1": "removed in Kubernetes 1.25"},
	KindHorizontalPodAutoscaler: {"autoscaling/v1": "an older version", "autoscaling/v2beta2": "removed in Kubernetes 1.26"},
}

// readAsOld restores what the beta versions defaulted differently: a
// workload without a selector selected its template's labels, DaemonSets
// and StatefulSets updated OnDelete, extensions/v1beta1 Deployments
// rolled one pod at a time.
func readAsOld(obj Object, oldVersion string) []string {
	var w []string
	switch o := obj.(type) {
	case *DaemonSet:
		if o.Spec.UpdateStrategy.Type == "" {
			o.Spec.UpdateStrategy.Type = DaemonSetOnDelete
			w = append(w, "spec.updateStrategy: none given; OnDelete, as the old version defaulted it (pods change only when deleted)")
		}
	case *StatefulSet:
		if o.Spec.UpdateStrategy.Type == "" {
			o.Spec.UpdateStrategy.Type = StatefulSetOnDelete
			w = append(w, "spec.updateStrategy: none given; OnDelete, as the old version defaulted it (pods change only when deleted)")
		}
	case *Deployment:
		if o.Spec.Strategy.Type == "" && oldVersion == "extensions/v1beta1" {
			one := IntOrInt(1)
			o.Spec.Strategy = DeploymentStrategy{Type: StrategyRollingUpdate, RollingUpdate: &RollingUpdateStrategy{MaxSurge: &one, MaxUnavailable: &one}}
			w = append(w, "spec.strategy: none given; RollingUpdate with maxSurge 1 and maxUnavailable 1, as the old version defaulted it")
		}
	}
	var sel **LabelSelector
	var labels map[string]string
	switch o := obj.(type) {
	case *Deployment:
		sel, labels = &o.Spec.Selector, o.Spec.Template.Metadata.Labels
	case *DaemonSet:
		sel, labels = &o.Spec.Selector, o.Spec.Template.Metadata.Labels
	case *StatefulSet:
		sel, labels = &o.Spec.Selector, o.Spec.Template.Metadata.Labels
	default:
		return w
	}
	if !(*sel).Empty() || len(labels) == 0 {
		return w
	}
	*sel = &LabelSelector{MatchLabels: labels}
	return append(w, "spec.selector: none given; the template's labels, as the old version defaulted it")
}

// fixRelativePaths makes a relative volume mountPath absolute, as the
// kubelet does, with a warning.
func fixRelativePaths(obj Object) []string {
	spec, prefix := PodSpecOf(obj)
	if spec == nil {
		return nil
	}
	var w []string
	for _, list := range []struct {
		name string
		cs   []Container
	}{{"containers", spec.Containers}, {"initContainers", spec.InitContainers}} {
		for i := range list.cs {
			for j := range list.cs[i].VolumeMounts {
				m := &list.cs[i].VolumeMounts[j]
				if m.MountPath != "" && !strings.HasPrefix(m.MountPath, "/") {
					w = append(w, fmt.Sprintf("%s.%s[%d].volumeMounts[%d].mountPath: %q is relative; mounted at /%s", prefix, list.name, i, j, m.MountPath, m.MountPath))
					m.MountPath = "/" + m.MountPath
				}
			}
		}
	}
	return w
}

// jsonText renders a decoded JSON scalar as the manifest wrote it.
func jsonText(v any) string {
	switch x := v.(type) {
	case map[string]any, []any:
		return jsonKind(v)
	case string:
		return strconv.Quote(x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// jsonKind names the kind of a decoded JSON value.
func jsonKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "true or false"
	case float64:
		return "a number"
	}
	return "null"
}
