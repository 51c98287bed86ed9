package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const configManifest = `apiVersion: v1
kind: ConfigMap
metadata: {name: app}
data:
  greeting: GREETING
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: pw1}
---
apiVersion: v1
kind: Pod
metadata: {name: cfg, labels: {app: cfg}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: edge.local/demo:latest
    command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    env:
    - name: PASSWORD
      valueFrom: {secretKeyRef: {name: creds, key: password}}
    volumeMounts:
    - {name: conf, mountPath: /etc/app}
    - {name: creds, mountPath: /run/creds}
  volumes:
  - name: conf
    configMap: {name: app}
  - name: creds
    secret: {secretName: creds, defaultMode: 0400}
`

// execPod runs a shell command in the first container of pod.
func (c *cluster) execPod(pod, cmd string) (string, error) {
	var id string
	for _, p := range c.podsJSON("") {
		if p.Metadata.Name == pod && len(p.Status.ContainerStatuses) > 0 {
			_, id, _ = strings.Cut(p.Status.ContainerStatuses[0].ContainerID, "://")
		}
	}
	if id == "" {
		return "", fmt.Errorf("pod %s has no container", pod)
	}
	out, err := ctrExec(c.ctrd.socket, id, cmd)
	return strings.TrimSpace(out), err
}

// ctrExec runs a shell command in a running container through ctr.
func ctrExec(socket, id, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ctr", "-a", socket, "-n", "edge", "tasks", "exec",
		"--exec-id", fmt.Sprintf("t%d", time.Now().UnixNano()), id, "/bin/sh", "-c", cmd).CombinedOutput()
	return string(out), err
}

// A ConfigMap as files that follow it in place, a Secret as env and as a
// 0400 file, on the real runtime.
func TestConfigMapsAndSecrets(t *testing.T) {
	needRoot(t)
	c := newCluster(t)
	c.apply(strings.Replace(configManifest, "GREETING", "hello", 1))
	c.runningPods(1, "app=cfg")
	for cmd, want := range map[string]string{
		"cat /etc/app/greeting":      "hello",
		"echo $PASSWORD":             "pw1",
		"cat /run/creds/password":    "pw1",
		"ls -lL /run/creds/password": "-r--------",
	} {
		if out, err := c.execPod("cfg", cmd); err != nil || !strings.HasPrefix(out, want) {
			t.Errorf("%s: %v %q, want %q", cmd, err, out, want)
		}
	}
	if out, err := c.execPod("cfg", "echo x > /etc/app/greeting"); err == nil {
		t.Errorf("a configMap volume is writable: %q", out)
	}
	id := c.podsJSON("app=cfg")[0].Status.ContainerStatuses[0].ContainerID
	start := time.Now()
	c.apply(strings.Replace(configManifest, "GREETING", "bonjour", 1))
	waitFor(t, 30*time.Second, "the new ConfigMap content in the running pod", func() error {
		if out, _ := c.execPod("cfg", "cat /etc/app/greeting"); out != "bonjour" {
			return fmt.Errorf("%q", out)
		}
		return nil
	})
	t.Logf("a changed ConfigMap was visible in the pod %s after the apply", time.Since(start).Round(10*time.Millisecond))
	if now := c.podsJSON("app=cfg")[0].Status.ContainerStatuses[0].ContainerID; now != id {
		t.Errorf("the container was replaced (%s -> %s); the volume should change in place", id, now)
	}
	c.mustEdgectl("delete", "pod", "cfg")
	waitFor(t, 30*time.Second, "the pod gone", func() error {
		if n := len(c.podsJSON("app=cfg")); n != 0 {
			return fmt.Errorf("%d pods", n)
		}
		return nil
	})
}
