package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/mqtt"
)

const spineManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: spine}
spec:
  replicas: %d
  selector: {matchLabels: {app: spine}}
  template:
    metadata: {labels: {app: spine}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: edge.local/demo:latest
        command: ["/bin/sh", "-c", "trap 'exit 0' TERM; echo up on $(hostname); while true; do sleep 1; done"]
        resources:
          limits: {memory: 32Mi, cpu: 250m}
`

// TestCluster runs one master and one agent on a private containerd and
// walks the spine: apply, limits, restart, scale, agent restart with
// adoption, delete; then bad input and a missing image.
func TestCluster(t *testing.T) {
	needRoot(t)
	c := newCluster(t)
	t.Run("Spine", func(t *testing.T) { c.t = t; testSpine(t, c) })
	t.Run("OOMKill", func(t *testing.T) { c.t = t; testOOMKill(t, c) })
	t.Run("MissingImage", func(t *testing.T) { c.t = t; testMissingImage(t, c) })
	t.Run("BadInput", func(t *testing.T) { c.t = t; testBadInput(t, c) })
	t.Run("ForeignTopic", func(t *testing.T) { c.t = t; testForeignTopic(t, c) })
	t.Run("BadAgentTokens", func(t *testing.T) { c.t = t; testBadAgentTokens(t, c) })
	t.Run("RejoinWhenRefused", func(t *testing.T) { c.t = t; testRejoin(t, c) })
	t.Run("CleanShutdown", func(t *testing.T) {
		for _, p := range []*proc{c.agent, c.master} {
			p.stop(syscall.SIGTERM, 10*time.Second)
			if code := p.cmd.ProcessState.ExitCode(); code != 0 {
				t.Fatalf("%s exited with %d on SIGTERM", p.name, code)
			}
		}
	})
}

// runningPods waits until n pods of the selector are Running with every
// container ready, and returns them.
func (c *cluster) runningPods(n int, selector string) []podJSON {
	c.t.Helper()
	var pods []podJSON
	waitFor(c.t, 60*time.Second, fmt.Sprintf("%d running pods (%s)", n, selector), func() error {
		pods = nil
		all := c.podsJSON(selector)
		for _, p := range all {
			if p.Metadata.DeletionTimestamp != "" {
				return fmt.Errorf("%s still terminating", p.Metadata.Name)
			}
			if p.Status.Phase == "Running" && len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].Ready {
				pods = append(pods, p)
			}
		}
		if len(pods) != n || len(all) != n {
			// Say why the others are not, for a failure's log.
			var why []string
			for _, p := range all {
				if len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].Ready {
					continue
				}
				w := p.Metadata.Name + ": " + p.Status.Phase
				for _, cs := range p.Status.ContainerStatuses {
					if cs.State.Waiting != nil {
						w += " " + cs.State.Waiting.Reason + " " + cs.State.Waiting.Message
					}
				}
				why = append(why, w)
			}
			return fmt.Errorf("%d of %d pods running; %s", len(pods), len(all), strings.Join(why, "; "))
		}
		return nil
	})
	return pods
}

func (c *cluster) waitTasks(n int) map[string]uint32 {
	c.t.Helper()
	var tasks map[string]uint32
	waitFor(c.t, 30*time.Second, fmt.Sprintf("%d running tasks in namespace edge", n), func() error {
		tasks = c.ctrd.tasks(c.t)
		if len(tasks) != n {
			return fmt.Errorf("%d tasks", len(tasks))
		}
		return nil
	})
	return tasks
}

func testSpine(t *testing.T, c *cluster) {
	out := c.apply(fmt.Sprintf(spineManifest, 2))
	if !strings.Contains(out, "deployment.apps/spine created") {
		t.Fatalf("apply said %q", out)
	}
	pods := c.runningPods(2, "app=spine")
	tasks := c.waitTasks(2)
	// The limits, as the kernel holds them (cgroup v1 or v2): 32Mi, 250m
	// of CPU (a quota of 25ms per 100ms) and the agent's default pids cap.
	for id := range tasks {
		for _, l := range []struct{ controller, v1, v2, want string }{
			{"memory", "memory.limit_in_bytes", "memory.max", "33554432"},
			{"cpu", "cpu.cfs_quota_us", "cpu.max", "25000"},
			{"pids", "pids.max", "pids.max", "1024"},
		} {
			got := c.ctrd.cgroupFile(t, id, l.controller, l.v1, l.v2)
			if l.v2 == "cpu.max" {
				got = strings.TrimSuffix(got, " 100000") // v2: "QUOTA PERIOD"
			}
			if got != l.want {
				t.Fatalf("%s of %s = %q, want %s", l.v2, id, got, l.want)
			}
		}
	}
	for _, p := range pods {
		if p.Spec.NodeName != c.node || p.Status.PodIP == "" {
			t.Fatalf("pod %s on %q with IP %q", p.Metadata.Name, p.Spec.NodeName, p.Status.PodIP)
		}
	}

	// Kill one container's process: the agent restarts it.
	victim := pods[0]
	id := strings.TrimPrefix(victim.Status.ContainerStatuses[0].ContainerID, "containerd://")
	pid, ok := tasks[id]
	if !ok {
		t.Fatalf("no task %s among %v", id, tasks)
	}
	if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "restartCount 1 on "+victim.Metadata.Name, func() error {
		for _, p := range c.podsJSON("app=spine") {
			if p.Metadata.Name == victim.Metadata.Name {
				cs := p.Status.ContainerStatuses
				if len(cs) == 1 && cs[0].RestartCount == 1 && p.Status.Phase == "Running" {
					return nil
				}
				return fmt.Errorf("status %+v", p.Status)
			}
		}
		return fmt.Errorf("pod gone")
	})
	tasks = c.waitTasks(2)
	if tasks[id] == pid {
		t.Fatal("the killed process is still the task's")
	}

	// Scale to 3.
	if out := c.apply(fmt.Sprintf(spineManifest, 3)); !strings.Contains(out, "configured") {
		t.Fatalf("apply said %q", out)
	}
	c.runningPods(3, "app=spine")
	before := c.waitTasks(3)

	// Kill the agent; the containers keep running; a new agent adopts them.
	c.agent.stop(syscall.SIGKILL, 5*time.Second)
	if now := c.ctrd.tasks(t); len(now) != 3 {
		t.Fatalf("%d tasks with the agent dead, want 3", len(now))
	}
	c.startAgent()
	waitFor(t, 30*time.Second, "the restarted agent to report", func() error {
		o, err := c.client.Get(context.Background(), core.Key{Kind: core.KindNode, Name: c.node})
		if err != nil {
			return err
		}
		if o.(*core.Node).Ready() != core.ConditionTrue {
			return fmt.Errorf("not ready")
		}
		return nil
	})
	c.runningPods(3, "app=spine")
	after := c.waitTasks(3)
	for id, pid := range before {
		if after[id] != pid {
			t.Fatalf("container %s: pid %d before the agent restart, %d after (recreated, not adopted)", id, pid, after[id])
		}
	}
	if n := c.ctrd.containerCount(t); n != 3 {
		t.Fatalf("%d containers after the agent restart, want 3 (duplicates or orphans)", n)
	}

	// Logs come through the master from the agent.
	pods = c.runningPods(3, "app=spine")
	logs := c.mustEdgectl("logs", pods[0].Metadata.Name)
	if !strings.Contains(logs, "up on "+pods[0].Metadata.Name) {
		t.Fatalf("logs of %s = %q", pods[0].Metadata.Name, logs)
	}

	// Delete: every container goes.
	c.mustEdgectl("delete", "deployment", "spine")
	waitFor(t, 60*time.Second, "zero containers and pods", func() error {
		if n := c.ctrd.containerCount(t); n != 0 {
			return fmt.Errorf("%d containers", n)
		}
		if n := len(c.podsJSON("app=spine")); n != 0 {
			return fmt.Errorf("%d pods", n)
		}
		return nil
	})
}

// A container that outgrows its memory limit is killed by the kernel, and
// its status says OOMKilled (the runtime's OOM event, or the cgroup's
// count: memory.oom_control on v1, memory.events on v2).
func testOOMKill(t *testing.T, c *cluster) {
	c.apply(`apiVersion: v1
kind: Pod
metadata: {name: hog, labels: {app: hog}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: edge.local/demo:latest
    command: ["tail", "/dev/zero"]
    resources: {limits: {memory: 16Mi}}
`)
	waitFor(t, 60*time.Second, "the pod OOM-killed", func() error {
		for _, p := range c.podsJSON("app=hog") {
			cs := p.Status.ContainerStatuses
			if len(cs) != 1 || cs[0].State.Terminated == nil {
				return fmt.Errorf("status %+v", p.Status)
			}
			if term := cs[0].State.Terminated; term.Reason != "OOMKilled" || term.ExitCode != 137 || p.Status.Phase != "Failed" {
				return fmt.Errorf("phase %s, terminated %+v", p.Status.Phase, *term)
			}
			return nil
		}
		return fmt.Errorf("no pod yet")
	})
	c.mustEdgectl("delete", "pod", "hog")
	waitFor(t, 30*time.Second, "the pod and its container to go", func() error {
		if n := len(c.podsJSON("app=hog")); n != 0 {
			return fmt.Errorf("%d pods", n)
		}
		if n := c.ctrd.containerCount(t); n != 0 {
			return fmt.Errorf("%d containers", n)
		}
		return nil
	})
}

func testMissingImage(t *testing.T, c *cluster) {
	c.apply(`apiVersion: v1
kind: Pod
metadata: {name: missing, labels: {app: missing}}
spec:
  containers:
  - name: c
    image: 127.0.0.1:1/missing/image:v1
`)
	waitFor(t, 30*time.Second, "an image pull error on the pod", func() error {
		for _, p := range c.podsJSON("app=missing") {
			cs := p.Status.ContainerStatuses
			if len(cs) == 1 && cs[0].State.Waiting != nil {
				w := cs[0].State.Waiting
				if (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") && strings.Contains(w.Message, "127.0.0.1:1/missing/image:v1") {
					if p.Status.Phase != "Pending" {
						return fmt.Errorf("phase %s", p.Status.Phase)
					}
					return nil
				}
				return fmt.Errorf("waiting %+v", *w)
			}
			return fmt.Errorf("status %+v", p.Status)
		}
		return fmt.Errorf("no pod yet")
	})
	desc := c.mustEdgectl("describe", "pod", "missing")
	if !strings.Contains(desc, "ImagePull") || !strings.Contains(desc, "127.0.0.1:1/missing/image:v1") {
		t.Fatalf("describe does not explain the pull failure:\n%s", desc)
	}
	if c.agent.exited() {
		t.Fatal("the agent died")
	}
	c.mustEdgectl("delete", "pod", "missing")
	waitFor(t, 30*time.Second, "the pod to go", func() error {
		if n := len(c.podsJSON("app=missing")); n != 0 {
			return fmt.Errorf("%d pods", n)
		}
		return nil
	})
}

func testBadInput(t *testing.T, c *cluster) {
	base := `apiVersion: apps/v1
kind: Deployment
metadata: {name: keep}
spec:
  replicas: 0
  selector: {matchLabels: {app: keep}}
  template:
    metadata: {labels: {app: keep}}
    spec:
      containers:
      - name: main
        image: edge.local/demo:latest
        resources: {limits: {memory: 32Mi}}
`
	c.apply(base)
	ctx := context.Background()
	key := core.Key{Kind: core.KindDeployment, Namespace: "default", Name: "keep"}
	orig, err := c.client.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) string {
		p := filepath.Join(c.dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	for _, tt := range []struct {
		name, manifest, want string
	}{
		{"UnknownField", strings.Replace(base, "image:", "imagePullPolice: Always\n        image:", 1),
			`unknown field "spec.template.spec.containers[0].imagePullPolice"`},
		{"BadQuantity", strings.Replace(base, "memory: 32Mi", "memory: 32MiB", 1),
			`spec.template.spec.containers[0].resources.limits.memory: quantity "32MiB" has an unknown suffix`},
		{"AllOrNothing", strings.Replace(base, "replicas: 0", "replicas: 1", 1) + "---\n" + strings.Replace(strings.Replace(base, "keep", "other", -1), "memory: 32Mi", "memory: lots", 1),
			`document 2`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := write(tt.name+".yaml", tt.manifest)
			_, stderr, err := c.edgectl("apply", "-f", path)
			if err == nil {
				t.Fatal("edgectl apply succeeded")
			}
			if !strings.Contains(stderr, tt.want) || !strings.Contains(stderr, path) {
				t.Fatalf("stderr %q\nwant it to name %s and contain %q", stderr, path, tt.want)
			}
			// The master refuses it too, without edgectl's own check.
			_, err = c.client.Apply(ctx, []core.ManifestFile{{Name: "raw.yaml", Data: []byte(tt.manifest)}})
			if core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("master answered %v", err)
			}
			now, err := c.client.Get(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if now.GetMeta().Generation != orig.GetMeta().Generation || !core.JSONEqual(core.SpecOf(now), core.SpecOf(orig)) {
				t.Fatal("the stored deployment changed")
			}
			if _, err := c.client.Get(ctx, core.Key{Kind: core.KindDeployment, Namespace: "default", Name: "other"}); core.ErrorCode(err) != core.ENOTFOUND {
				t.Fatalf("half of a bad apply was stored: %v", err)
			}
		})
	}
	t.Run("WrongAdminToken", func(t *testing.T) {
		_, stderr, err := c.edgectl("--token", "not-the-token", "get", "pods")
		if err == nil || !strings.Contains(stderr, "token was refused") {
			t.Fatalf("err %v, stderr %q", err, stderr)
		}
	})
	t.Run("UnknownKind", func(t *testing.T) {
		_, stderr, err := c.edgectl("get", "gateways")
		if err == nil || !strings.Contains(stderr, `unknown resource type "gateways"`) {
			t.Fatalf("err %v, stderr %q", err, stderr)
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		_, stderr, err := c.edgectl("get", "deployment", "nope")
		if err == nil || !strings.Contains(stderr, `deployment "nope" not found`) {
			t.Fatalf("err %v, stderr %q", err, stderr)
		}
	})
	c.mustEdgectl("delete", "deploy", "keep")
}

// A node's credentials cannot be used to speak for another node.
func testForeignTopic(t *testing.T, c *cluster) {
	var creds struct {
		MQTTURL  string `json:"mqttURL"`
		Password string `json:"mqttPassword"`
		CACert   string `json:"caCert"`
	}
	b, err := os.ReadFile(filepath.Join(c.dir, "agent", "credentials.json"))
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(b, &creds)
	tlsConfig, err := api.CATLS([]byte(creds.CACert))
	if err != nil {
		t.Fatal(err)
	}
	// Stop the real agent so the forger can use its client id.
	c.agent.stop(syscall.SIGTERM, 10*time.Second)
	defer func() {
		c.startAgent()
		c.runningPods(0, "app=spine")
	}()
	client := paho.NewClient(paho.NewClientOptions().AddBroker(creds.MQTTURL).SetClientID(mqtt.ClientID(c.node)).
		SetUsername("node:" + c.node).SetPassword(creds.Password).SetTLSConfig(tlsConfig).SetAutoReconnect(false).
		SetTLSConfig(&tls.Config{RootCAs: tlsConfig.RootCAs, InsecureSkipVerify: true, VerifyPeerCertificate: tlsConfig.VerifyPeerCertificate}))
	if tok := client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect with the node's own credentials: %v", tok.Error())
	}
	defer client.Disconnect(0)
	forged := fmt.Sprintf(`{"node":"ghost","labels":{"forged":"yes"},"status":{},"pods":[]}`)
	client.Publish("edge/node/ghost/report", 1, false, forged).WaitTimeout(5 * time.Second)
	client.Publish("edge/node/ghost/online", 1, true, "online").WaitTimeout(5 * time.Second)
	waitFor(t, 10*time.Second, "the broker to drop the forger", func() error {
		if client.IsConnectionOpen() {
			return fmt.Errorf("still connected")
		}
		return nil
	})
	if _, err := c.client.Get(context.Background(), core.Key{Kind: core.KindNode, Name: "ghost"}); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("a forged report created node ghost: %v", err)
	}
	logs, _ := os.ReadFile(c.master.log)
	if !strings.Contains(string(logs), "denied publish on a foreign topic") {
		t.Fatal("the master did not log the denied publish")
	}
}

func testBadAgentTokens(t *testing.T, c *cluster) {
	jt, err := api.ParseJoinToken(c.token)
	if err != nil {
		t.Fatal(err)
	}
	other := strings.Repeat("ab", 32)
	for _, tt := range []struct {
		name, token, want string
	}{
		{"WrongSecret", "K10" + jt.CAHash + "::" + jt.ID + ".wrongsecret", "join token was refused"},
		{"WrongCAPin", "K10" + other + "::" + jt.ID + "." + jt.Secret, "does not match the join token"},
		{"Malformed", "hello", "malformed join token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Cleanup(func() { os.RemoveAll("/run/edge/intruder") })
			cmd := exec.Command(filepath.Join(binDir, "edgeagent"), "--master", c.apiURL, "--token", tt.token, "--name", "intruder",
				"--data-dir", dir, "--containerd", c.ctrd.socket, "--cni-bin-dir", "/nonexistent")
			done := make(chan struct{})
			var out []byte
			go func() { out, _ = cmd.CombinedOutput(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Fatalf("agent with a bad token kept running:\n%s", out)
			}
			if cmd.ProcessState.ExitCode() == 0 || !strings.Contains(string(out), tt.want) {
				t.Fatalf("exit %d, output:\n%s\nwant %q", cmd.ProcessState.ExitCode(), out, tt.want)
			}
			if _, err := c.client.Get(context.Background(), core.Key{Kind: core.KindNode, Name: "intruder"}); core.ErrorCode(err) != core.ENOTFOUND {
				t.Fatalf("node intruder exists: %v", err)
			}
		})
	}
}

// An agent whose saved credentials the master no longer knows (its data
// was restored from an older backup, say) joins again with its token.
func testRejoin(t *testing.T, c *cluster) {
	c.agent.stop(syscall.SIGTERM, 10*time.Second)
	path := filepath.Join(c.dir, "agent", "credentials.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var creds map[string]any
	json.Unmarshal(b, &creds)
	creds["mqttPassword"] = "not-what-the-master-issued"
	b, _ = json.Marshal(creds)
	os.WriteFile(path, b, 0o600)
	c.startAgent()
	waitFor(t, 60*time.Second, "the agent to join again and its node to be Ready", func() error {
		logs, _ := os.ReadFile(c.agent.log)
		if !strings.Contains(string(logs), "joining again") {
			return fmt.Errorf("no re-join yet")
		}
		o, err := c.client.Get(context.Background(), core.Key{Kind: core.KindNode, Name: c.node})
		if err != nil {
			return err
		}
		if o.(*core.Node).Ready() != core.ConditionTrue {
			return fmt.Errorf("node not Ready")
		}
		return nil
	})
	c.apply(fmt.Sprintf(spineManifest, 1))
	c.runningPods(1, "app=spine")
	c.mustEdgectl("delete", "deployment", "spine")
	waitFor(t, 60*time.Second, "spine to go", func() error {
		if n := c.ctrd.containerCount(t); n != 0 {
			return fmt.Errorf("%d containers", n)
		}
		return nil
	})
}
