package edgeagent

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edgeorch/edge/core"
)

func configState(hash, conf string) *core.DesiredState {
	optional := true
	mode := int32(0o400)
	c := busybox("app")
	c.Env = []core.EnvVar{
		{Name: "LEVEL", ValueFrom: &core.EnvVarSource{ConfigMapKeyRef: &core.KeySelector{Name: "conf", Key: "level"}}},
		{Name: "PASSWORD", ValueFrom: &core.EnvVarSource{SecretKeyRef: &core.KeySelector{Name: "creds", Key: "password"}}},
		{Name: "GONE", ValueFrom: &core.EnvVarSource{ConfigMapKeyRef: &core.KeySelector{Name: "conf", Key: "nope", Optional: &optional}}},
		{Name: "POD", ValueFrom: &core.EnvVarSource{FieldRef: &core.ObjectFieldSelector{FieldPath: "metadata.name"}}},
	}
	c.EnvFrom = []core.EnvFromSource{{Prefix: "CONF_", ConfigMapRef: &core.NameOptional{Name: "conf"}}}
	c.VolumeMounts = []core.VolumeMount{{Name: "conf", MountPath: "/etc/app"}, {Name: "creds", MountPath: "/run/creds"}}
	pod := testPod("web", c)
	pod.Spec.Volumes = []core.Volume{
		{Name: "conf", ConfigMap: &core.ConfigMapVolumeSource{Name: "conf", Items: []core.KeyToPath{{Key: "app.conf", Path: "sub/app.conf"}}}},
		{Name: "creds", Secret: &core.SecretVolumeSource{SecretName: "creds", DefaultMode: &mode}},
	}
	ds := desired(hash, pod)
	ds.ConfigMaps = []*core.ConfigMap{{Metadata: core.ObjectMeta{Name: "conf", Namespace: "default"},
		Data: map[string]string{"level": "debug", "app.conf": conf}}}
	ds.Secrets = []*core.Secret{{Metadata: core.ObjectMeta{Name: "creds", Namespace: "default"},
		Data: map[string][]byte{"password": []byte("s3cret")}}}
	return ds
}

// ConfigMaps and Secrets reach a pod as env (fixed at start) and as files
// that follow the object in place; secrets stay out of the data dir.
func TestAgentConfigMapsAndSecrets(t *testing.T) {
	clk := newFakeClock()
	rt := newFakeRuntime(clk.Now)
	rt.addImage("busybox")
	dir := t.TempDir()
	a, _ := openTestAgent(t, rt, clk, dir)
	ds := configState("h1", "port=1\n")
	pod := ds.Pods[0]
	a.SetDesired(ds)
	waitRunning(t, a, pod, 0)
	cfg := rt.config(containerID(pod, "app"))
	for _, want := range []string{"LEVEL=debug", "PASSWORD=s3cret", "POD=web", "CONF_level=debug", "CONF_app.conf=port=1\n"} {
		if !slices.Contains(cfg.Env, want) {
			t.Errorf("env lacks %q: %q", want, cfg.Env)
		}
	}
	for _, e := range cfg.Env {
		if strings.HasPrefix(e, "GONE=") {
			t.Errorf("an optional missing key was set: %s", e)
		}
	}
	var confDir, credsDir string
	for _, m := range cfg.Mounts {
		switch m.Destination {
		case "/etc/app":
			confDir = m.Source
		case "/run/creds":
			credsDir = m.Source
		}
		if (m.Destination == "/etc/app" || m.Destination == "/run/creds") && !m.ReadOnly {
			t.Errorf("%s is mounted writable", m.Destination)
		}
	}
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	if got := read(filepath.Join(confDir, "sub/app.conf")); got != "port=1\n" {
		t.Fatalf("configMap file: %q", got)
	}
	if _, err := os.Stat(filepath.Join(confDir, "level")); err == nil {
		t.Fatal("items given: only the listed keys are files")
	}
	st, err := os.Stat(filepath.Join(credsDir, "password"))
	if err != nil || st.Mode().Perm() != 0o400 || read(filepath.Join(credsDir, "password")) != "s3cret" {
		t.Fatalf("secret file: %v %v", st, err)
	}
	if !strings.HasPrefix(credsDir, a.RunDir) {
		t.Fatalf("secret volume %s is not under the run dir %s", credsDir, a.RunDir)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "desired.json")); strings.Contains(string(b), "czNjcmV0") || strings.Contains(string(b), "s3cret") {
		t.Fatal("the secret is in the data dir")
	}

	// A changed ConfigMap: the file changes in place, the container stays.
	a.SetDesired(configState("h2", "port=2\n"))
	waitUntil(t, "the new content in the volume", func() bool { return read(filepath.Join(confDir, "sub/app.conf")) == "port=2\n" })
	if _, created := rt.counts(); created != 1 {
		t.Fatalf("%d containers created for a config change", created)
	}
	// The old content goes just after the swap.
	waitUntil(t, "only ..data, one ..<timestamp> and sub in the volume dir", func() bool {
		entries, _ := os.ReadDir(confDir)
		return len(entries) == 3 && entries[0].Name() == "..data" && entries[2].Name() == "sub"
	})

	// A pod whose ConfigMap is missing waits, saying which.
	missing := configState("h3", "x")
	missing.ConfigMaps = nil
	missing.Pods[0] = testPod("other", missing.Pods[0].Spec.Containers[0])
	missing.Pods[0].Spec.Volumes = configState("x", "x").Pods[0].Spec.Volumes
	a.SetDesired(missing)
	waitUntil(t, "CreateContainerConfigError", func() bool {
		for _, p := range a.Snapshot().Pods {
			for _, cs := range p.Status.ContainerStatuses {
				if w := cs.State.Waiting; p.Name == "other" && w != nil && w.Reason == "CreateContainerConfigError" && strings.Contains(w.Message, `configmap "conf" not found`) {
					return true
				}
			}
		}
		return false
	})
}
