package core

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// ConfigMaps and Secrets: configuration a pod reads as files or
// environment variables. The master sends a node only those its pods use.

// ConfigMap holds configuration as text (data) or bytes (binaryData).
type ConfigMap struct {
	TypeMeta   `json:",inline"`
	Metadata   ObjectMeta        `json:"metadata"`
	Data       map[string]string `json:"data,omitempty"`
	BinaryData map[string][]byte `json:"binaryData,omitempty"`
	Immutable  *bool             `json:"immutable,omitempty"`
}

func (c *ConfigMap) GetTypeMeta() *TypeMeta { return &c.TypeMeta }
func (c *ConfigMap) GetMeta() *ObjectMeta   { return &c.Metadata }

// Secret holds sensitive configuration. stringData is write-only: apply
// merges it into data. The master keeps secrets encrypted at rest.
type Secret struct {
	TypeMeta   `json:",inline"`
	Metadata   ObjectMeta        `json:"metadata"`
	Type       string            `json:"type,omitempty"`
	Data       map[string][]byte `json:"data,omitempty"`
	StringData map[string]string `json:"stringData,omitempty"`
	Immutable  *bool             `json:"immutable,omitempty"`
}

func (s *Secret) GetTypeMeta() *TypeMeta { return &s.TypeMeta }
func (s *Secret) GetMeta() *ObjectMeta   { return &s.Metadata }

// MaxConfigSize bounds a ConfigMap's or Secret's data, as Kubernetes does
// (etcd's 1 MiB): a node keeps them all in memory and on disk.
const MaxConfigSize = 1 << 20

var configKeyRe = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)

// Files returns the object's keys and contents (a Secret's stringData
// merged in, as apply stores it).
func (c *ConfigMap) Files() map[string][]byte {
	out := make(map[string][]byte, len(c.Data)+len(c.BinaryData))
	for k, v := range c.Data {
		out[k] = []byte(v)
	}
	for k, v := range c.BinaryData {
		out[k] = v
	}
	return out
}

// Files returns the secret's keys and contents, stringData included.
func (s *Secret) Files() map[string][]byte {
	out := make(map[string][]byte, len(s.Data)+len(s.StringData))
	for k, v := range s.Data {
		out[k] = v
	}
	for k, v := range s.StringData {
		out[k] = []byte(v)
	}
	return out
}

func validateConfigData(what string, files map[string]int, dupes []string) error {
	if len(dupes) > 0 {
		return invalid(dupes[0], "key is in both data and %s", what)
	}
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	size := 0
	for _, k := range keys {
		if len(k) > 253 || !configKeyRe.MatchString(k) || k == "." || k == ".." {
			return invalid("data", "key %q: must be letters, digits, '-', '_' or '.' (at most 253)", k)
		}
		size += len(k) + files[k]
	}
	if size > MaxConfigSize {
		return invalid("data", "%d bytes: at most %d (1 MiB); keep large files in an image or a volume", size, MaxConfigSize)
	}
	return nil
}

func validateConfigMap(c *ConfigMap) error {
	files := map[string]int{}
	var dupes []string
	for k, v := range c.Data {
		files[k] = len(v)
	}
	for k, v := range c.BinaryData {
		if _, ok := files[k]; ok {
			dupes = append(dupes, "binaryData."+k)
		}
		files[k] = len(v)
	}
	return validateConfigData("binaryData", files, dupes)
}

// secretTypes are the types Kubernetes defines; others (a vendor's
// "example.com/x") are accepted as opaque too, as Kubernetes does.
var secretTypeRe = regexp.MustCompile(`^[a-zA-Z0-9][-._/a-zA-Z0-9]{0,252}$`)

func validateSecret(s *Secret) error {
	if !secretTypeRe.MatchString(s.Type) {
		return invalid("type", "%q is not a secret type (Opaque, kubernetes.io/tls, ...)", s.Type)
	}
	files := map[string]int{}
	var dupes []string
	for k, v := range s.Data {
		files[k] = len(v)
	}
	for k, v := range s.StringData {
		files[k] = len(v) // stringData wins over data, as in Kubernetes
	}
	if err := validateConfigData("stringData", files, dupes); err != nil {
		return err
	}
	if s.Type == "kubernetes.io/tls" {
		f := s.Files()
		if _, ok := f["tls.crt"]; !ok {
			return invalid("data", "a kubernetes.io/tls secret needs tls.crt and tls.key")
		}
		if _, ok := f["tls.key"]; !ok {
			return invalid("data", "a kubernetes.io/tls secret needs tls.crt and tls.key")
		}
	}
	return nil
}

// KeyToPath projects one key of a ConfigMap or Secret to a file.
type KeyToPath struct {
	Key  string `json:"key"`
	Path string `json:"path"`
	Mode *int32 `json:"mode,omitempty"`
}

type ConfigMapVolumeSource struct {
	Name        string      `json:"name"`
	Items       []KeyToPath `json:"items,omitempty"`
	DefaultMode *int32      `json:"defaultMode,omitempty"`
	Optional    *bool       `json:"optional,omitempty"`
}

type SecretVolumeSource struct {
	SecretName  string      `json:"secretName"`
	Items       []KeyToPath `json:"items,omitempty"`
	DefaultMode *int32      `json:"defaultMode,omitempty"`
	Optional    *bool       `json:"optional,omitempty"`
}

// EnvVarSource takes an environment variable's value from a ConfigMap, a
// Secret or the pod itself.
type EnvVarSource struct {
	ConfigMapKeyRef *KeySelector         `json:"configMapKeyRef,omitempty"`
	SecretKeyRef    *KeySelector         `json:"secretKeyRef,omitempty"`
	FieldRef        *ObjectFieldSelector `json:"fieldRef,omitempty"`
}

type KeySelector struct {
	Name     string `json:"name"`
	Key      string `json:"key"`
	Optional *bool  `json:"optional,omitempty"`
}

type ObjectFieldSelector struct {
	APIVersion string `json:"apiVersion,omitempty"`
	FieldPath  string `json:"fieldPath"`
}

// EnvFromSource takes every key of a ConfigMap or Secret as a variable.
type EnvFromSource struct {
	Prefix       string        `json:"prefix,omitempty"`
	ConfigMapRef *NameOptional `json:"configMapRef,omitempty"`
	SecretRef    *NameOptional `json:"secretRef,omitempty"`
}

type NameOptional struct {
	Name     string `json:"name"`
	Optional *bool  `json:"optional,omitempty"`
}

// FieldPaths are the pod fields an env fieldRef may read.
var FieldPaths = []string{"metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
	"spec.serviceAccountName", "status.podIP", "status.hostIP"}

func validateKeyToPaths(p string, items []KeyToPath) error {
	for i, it := range items {
		ip := fmt.Sprintf("%s.items[%d]", p, i)
		if it.Key == "" {
			return invalid(ip+".key", "required")
		}
		if it.Path == "" || path.IsAbs(it.Path) || strings.HasPrefix(path.Clean(it.Path), "..") || strings.HasPrefix(it.Path, "..") {
			return invalid(ip+".path", "%q must be a relative path inside the volume", it.Path)
		}
		if it.Mode != nil && (*it.Mode < 0 || *it.Mode > 0o777) {
			return invalid(ip+".mode", "%o is not a file mode (0-0777)", *it.Mode)
		}
	}
	return nil
}

func validateMode(p string, m *int32) error {
	if m != nil && (*m < 0 || *m > 0o777) {
		return invalid(p, "%o is not a file mode (0-0777)", *m)
	}
	return nil
}

// ConfigRefs lists the ConfigMaps and Secrets a pod spec uses, by name.
func (s *PodSpec) ConfigRefs() (configMaps, secrets []string) {
	// Called for every pod on every control-loop pass: no allocation for
	// a pod that uses none (most), and no maps for one that does.
	for _, v := range s.Volumes {
		if v.ConfigMap != nil {
			configMaps = append(configMaps, v.ConfigMap.Name)
		}
		if v.Secret != nil {
			secrets = append(secrets, v.Secret.SecretName)
		}
	}
	for i := range s.InitContainers {
		configMaps, secrets = s.InitContainers[i].configRefs(configMaps, secrets)
	}
	for i := range s.Containers {
		configMaps, secrets = s.Containers[i].configRefs(configMaps, secrets)
	}
	slices.Sort(configMaps)
	slices.Sort(secrets)
	return slices.Compact(configMaps), slices.Compact(secrets)
}

// configRefs appends the ConfigMaps and Secrets c's environment uses.
func (c *Container) configRefs(configMaps, secrets []string) ([]string, []string) {
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
			configMaps = append(configMaps, e.ValueFrom.ConfigMapKeyRef.Name)
		}
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			secrets = append(secrets, e.ValueFrom.SecretKeyRef.Name)
		}
	}
	for _, f := range c.EnvFrom {
		if f.ConfigMapRef != nil {
			configMaps = append(configMaps, f.ConfigMapRef.Name)
		}
		if f.SecretRef != nil {
			secrets = append(secrets, f.SecretRef.Name)
		}
	}
	return configMaps, secrets
}
