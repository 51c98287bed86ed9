package edgeagent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/edgeorch/edge/core"
)

// ConfigMaps and Secrets on the node: the desired state brings the ones
// this node's pods use. Secrets never go to the data dir: they are kept
// (0600) under RunDir, a tmpfs on most systems, so a stolen SD card does
// not hold them; after a reboot without the master, pods using secrets
// wait for it, as Kubernetes' do.

func (a *Agent) secretsPath() string { return filepath.Join(a.RunDir, "secrets.json") }

// saveDesired writes ds without its secrets to the data dir, and the
// secrets to RunDir.
func (a *Agent) saveDesired(ds *core.DesiredState) error {
	plain := *ds
	plain.Secrets = nil
	if err := saveJSON(a.desiredPath(), &plain); err != nil {
		return err
	}
	if len(ds.Secrets) == 0 {
		if err := os.Remove(a.secretsPath()); err != nil && !os.IsNotExist(err) {
			return err
		}
		return nil
	}
	return saveJSON(a.secretsPath(), ds.Secrets)
}

// loadSecrets puts the secrets kept in RunDir back into a desired state
// loaded from the data dir.
func (a *Agent) loadSecrets(ds *core.DesiredState) {
	b, err := os.ReadFile(a.secretsPath())
	if err != nil {
		return
	}
	if err := json.Unmarshal(b, &ds.Secrets); err != nil {
		a.Log.Error("ignoring unreadable saved secrets", "file", a.secretsPath(), "err", err)
	}
}

// configFiles returns the files of ConfigMap or Secret name in namespace
// from the current desired state; ok is false when the node has no such
// object.
func (a *Agent) configFiles(secret bool, namespace, name string) (map[string][]byte, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.desired == nil {
		return nil, false
	}
	if secret {
		for _, s := range a.desired.Secrets {
			if s.Metadata.Namespace == namespace && s.Metadata.Name == name {
				return s.Files(), true
			}
		}
		return nil, false
	}
	for _, c := range a.desired.ConfigMaps {
		if c.Metadata.Namespace == namespace && c.Metadata.Name == name {
			return c.Files(), true
		}
	}
	return nil, false
}

func kindName(secret bool) string {
	if secret {
		return "secret"
	}
	return "configmap"
}

// containerEnv resolves a container's environment at its start: service
// variables, then envFrom, then env (later ones win). A missing ConfigMap,
// Secret or key that is not optional is an error naming it (the pod waits
// in CreateContainerConfigError).
func (w *podWorker) containerEnv(pod *core.Pod, c *core.Container) ([]string, error) {
	var env []string
	if links := pod.Spec.EnableServiceLinks; links == nil || *links {
		env = serviceEnv(w.a.networkState(), pod.Metadata.Namespace)
	}
	for _, f := range c.EnvFrom {
		secret, ref := f.SecretRef != nil, f.ConfigMapRef
		if secret {
			ref = f.SecretRef
		}
		files, ok := w.a.configFiles(secret, pod.Metadata.Namespace, ref.Name)
		if !ok {
			if ref.Optional != nil && *ref.Optional {
				continue
			}
			return nil, fmt.Errorf("%s %q not found", kindName(secret), ref.Name)
		}
		keys := make([]string, 0, len(files))
		for k := range files {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			env = append(env, f.Prefix+k+"="+string(files[k]))
		}
	}
	for _, e := range c.Env {
		v, err := w.envValue(pod, e)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		if v != nil {
			env = append(env, e.Name+"="+*v)
		}
	}
	return env, nil
}

// envValue returns one variable's value (nil: an optional one left out).
func (w *podWorker) envValue(pod *core.Pod, e core.EnvVar) (*string, error) {
	src := e.ValueFrom
	if src == nil {
		return &e.Value, nil
	}
	if f := src.FieldRef; f != nil {
		v := fieldValue(pod, f.FieldPath, w.a.HostIP())
		if f.FieldPath == "status.podIP" {
			w.mu.Lock()
			v = w.podIP
			w.mu.Unlock()
			if pod.Spec.HostNetwork {
				v = w.a.HostIP()
			}
		}
		return &v, nil
	}
	secret, ref := src.SecretKeyRef != nil, src.ConfigMapKeyRef
	if secret {
		ref = src.SecretKeyRef
	}
	optional := ref.Optional != nil && *ref.Optional
	files, ok := w.a.configFiles(secret, pod.Metadata.Namespace, ref.Name)
	if !ok {
		if optional {
			return nil, nil
		}
		return nil, fmt.Errorf("%s %q not found", kindName(secret), ref.Name)
	}
	b, ok := files[ref.Key]
	if !ok {
		if optional {
			return nil, nil
		}
		return nil, fmt.Errorf("key %q not found in %s %q", ref.Key, kindName(secret), ref.Name)
	}
	v := string(b)
	return &v, nil
}

func fieldValue(pod *core.Pod, path, hostIP string) string {
	switch path {
	case "metadata.name":
		return pod.Metadata.Name
	case "metadata.namespace":
		return pod.Metadata.Namespace
	case "metadata.uid":
		return pod.Metadata.UID
	case "spec.nodeName":
		return pod.Spec.NodeName
	case "status.hostIP":
		return hostIP
	}
	for _, m := range []struct {
		prefix string
		from   map[string]string
	}{{"metadata.labels['", pod.Metadata.Labels}, {"metadata.annotations['", pod.Metadata.Annotations}} {
		if k, ok := strings.CutPrefix(path, m.prefix); ok {
			return m.from[strings.TrimSuffix(k, "']")]
		}
	}
	return ""
}

// configVolumeDir is where a pod's configMap or secret volume lives on the
// node: secrets under RunDir (tmpfs), config maps with the pod's files.
func (w *podWorker) configVolumeDir(v core.Volume) string {
	if v.Secret != nil {
		return filepath.Join(w.a.RunDir, "pods", w.uid, "volumes", v.Name)
	}
	return filepath.Join(w.podDir(), "volumes", v.Name)
}

// syncConfigVolumes writes the pod's configMap and secret volumes from the
// current desired state, as the kubelet's atomic writer does: the files
// live in a timestamped directory that the "..data" symlink names, each
// key is a symlink through it, and an update swaps "..data" in one
// rename, so a container never reads half an update. Unchanged volumes
// are left alone. A missing, not optional object is an error naming it.
func (w *podWorker) syncConfigVolumes(pod *core.Pod) error {
	for _, v := range pod.Spec.Volumes {
		if v.ConfigMap == nil && v.Secret == nil {
			continue
		}
		secret := v.Secret != nil
		name, items, mode, optional := "", []core.KeyToPath(nil), int32(0o644), false
		if secret {
			s := v.Secret
			name, items, optional = s.SecretName, s.Items, s.Optional != nil && *s.Optional
			if s.DefaultMode != nil {
				mode = *s.DefaultMode
			}
		} else {
			c := v.ConfigMap
			name, items, optional = c.Name, c.Items, c.Optional != nil && *c.Optional
			if c.DefaultMode != nil {
				mode = *c.DefaultMode
			}
		}
		files, ok := w.a.configFiles(secret, pod.Metadata.Namespace, name)
		if !ok && !optional {
			return fmt.Errorf("volume %q: %s %q not found", v.Name, kindName(secret), name)
		}
		type file struct {
			data []byte
			mode os.FileMode
		}
		want := map[string]file{}
		if len(items) == 0 {
			for k, d := range files {
				want[k] = file{d, os.FileMode(mode)}
			}
		}
		for _, it := range items {
			d, ok := files[it.Key]
			if !ok {
				if optional {
					continue
				}
				return fmt.Errorf("volume %q: key %q not found in %s %q", v.Name, it.Key, kindName(secret), name)
			}
			m := mode
			if it.Mode != nil {
				m = *it.Mode
			}
			want[filepath.Clean(it.Path)] = file{d, os.FileMode(m)}
		}
		dir := w.configVolumeDir(v)
		if same(dir, want, func(f file) ([]byte, os.FileMode) { return f.data, f.mode }) {
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		ts := filepath.Join(dir, ".."+strconv.FormatInt(time.Now().UnixNano(), 36))
		for p, f := range want {
			if err := os.MkdirAll(filepath.Join(ts, filepath.Dir(p)), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(ts, p), f.data, f.mode); err != nil {
				return err
			}
			if err := os.Chmod(filepath.Join(ts, p), f.mode); err != nil { // past the umask
				return err
			}
		}
		old, _ := os.Readlink(filepath.Join(dir, "..data"))
		tmp := filepath.Join(dir, "..data_tmp")
		os.Remove(tmp)
		if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			return err
		}
		// The user-visible names: one symlink per top-level entry.
		top := map[string]bool{}
		for p := range want {
			top[strings.SplitN(p, string(filepath.Separator), 2)[0]] = true
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), "..") && !top[e.Name()] {
				os.RemoveAll(filepath.Join(dir, e.Name()))
			}
		}
		for t := range top {
			link := filepath.Join(dir, t)
			if target, err := os.Readlink(link); err == nil && target == filepath.Join("..data", t) {
				continue
			}
			os.RemoveAll(link)
			if err := os.Symlink(filepath.Join("..data", t), link); err != nil {
				return err
			}
		}
		if old != "" && old != filepath.Base(ts) {
			os.RemoveAll(filepath.Join(dir, old))
		}
	}
	return nil
}

// same reports whether dir's current "..data" holds exactly want.
func same[F any](dir string, want map[string]F, get func(F) ([]byte, os.FileMode)) bool {
	data := filepath.Join(dir, "..data")
	n := 0
	err := filepath.Walk(data+"/", func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(data, p)
		f, ok := want[rel]
		if !ok {
			return fmt.Errorf("extra")
		}
		b, m := get(f)
		cur, err := os.ReadFile(p)
		if err != nil || string(cur) != string(b) || info.Mode().Perm() != m.Perm() {
			return fmt.Errorf("changed")
		}
		n++
		return nil
	})
	return err == nil && n == len(want)
}
