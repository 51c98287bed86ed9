package core

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
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
	if want := Kind(kind).APIVersion(); apiVersion != want {
		return nil, Errorf(EINVALID, "%s: apiVersion %q is not supported for %s (use %s)", what, apiVersion, kind, want)
	}
	// Every problem of the document in one error: the unknown fields and
	// what validation finds in the rest.
	var pr problems
	checkFields(raw, reflect.TypeOf(obj).Elem(), "", &pr)
	if err := json.Unmarshal(j, obj); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			pr.add(Errorf(EINVALID, "%s: expected %s, got %s", te.Field, te.Type, te.Value))
		} else {
			pr.add(Errorf(EINVALID, "%v", err))
		}
		return nil, Errorf(EINVALID, "%s: %s", what, ErrorMessage(pr.err()))
	}
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
	if v == nil || reflect.PointerTo(t).Implements(unmarshalerType) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			pr.add(fmt.Errorf("%s: expected a mapping", strings.TrimPrefix(path, ".")))
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
			pr.add(fmt.Errorf("%s: expected a list", strings.TrimPrefix(path, ".")))
			return
		}
		for i, e := range s {
			checkFields(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), pr)
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
