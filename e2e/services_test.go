package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Pod networking and services on the namespace cluster: every node's
// agent programs real iptables rules, routes and a DNS server inside its
// own network namespace, pods get addresses from per-node subnets through
// the CNI bridge plugin, and the gateway reaches NodePort and LoadBalancer
// ports over the LAN.

// svcWeb serves, on 8080, its hostname at / and the client's address at
// /cgi-bin/ip, and is ready while /tmp/unready does not exist.
const svcWeb = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: edge.local/demo:latest
        command: ["/bin/sh", "-c"]
        args:
        - |
          mkdir -p /tmp/www/cgi-bin
          hostname > /tmp/www/index.html
          printf '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "$REMOTE_ADDR"\n' > /tmp/www/cgi-bin/ip
          chmod +x /tmp/www/cgi-bin/ip
          exec httpd -f -p 8080 -h /tmp/www
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          exec: {command: ["/bin/sh", "-c", "test ! -f /tmp/unready"]}
          periodSeconds: 1
          failureThreshold: 1
        resources:
          limits: {memory: 32Mi}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 8088, targetPort: 8080}]
`

// svcExtra: a headless service, one with ClientIP affinity, one keeping
// the client's address (externalTrafficPolicy: Local), and a pod with a
// hostPort on NODE.
const svcExtra = `apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-sticky}
spec:
  sessionAffinity: ClientIP
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-local}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30081}]
---
apiVersion: v1
kind: Pod
metadata: {name: hostport}
spec:
  nodeSelector: {kubernetes.io/hostname: NODE}
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: edge.local/demo:latest
    command: ["/bin/sh", "-c", "echo hostport > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"]
    ports: [{containerPort: 8080, hostPort: 18080}]
`

// svcClient is a pod on NODE to send requests from (it starts after the
// services, so it gets their variables).
const svcClient = `apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeSelector: {kubernetes.io/hostname: NODE}
  terminationGracePeriodSeconds: 1
  containers:
  - name: sh
    image: edge.local/demo:latest
    command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
`

// containerIDs caches pod name -> first container's id, so execIn works
// while the master is down.
var containerIDs = map[string]string{}

// execIn runs cmd in the first container of pod on host h and returns its
// output.
func (tf *testFleet) execIn(h *Host, pod string, cmd string) (string, error) {
	tf.t.Helper()
	id := containerIDs[pod]
	if id == "" {
		for _, p := range tf.pods("") {
			if p.Metadata.Name == pod && len(p.Status.ContainerStatuses) > 0 {
				_, id, _ = strings.Cut(p.Status.ContainerStatuses[0].ContainerID, "://")
			}
		}
		if id == "" {
			return "", fmt.Errorf("pod %s has no container", pod)
		}
		containerIDs[pod] = id
	}
	return ctrExec(h.Socket, id, cmd)
}

// inNS runs a command in host h's network namespace.
func inNS(h *Host, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", h.NS}, args...)...).CombinedOutput()
	return string(out), err
}

// hits sends n requests from pod client and counts the answers by body.
func (tf *testFleet) hits(h *Host, url string, n int) (map[string]int, error) {
	out, err := tf.execIn(h, "client", fmt.Sprintf("for i in $(seq %d); do timeout 3 wget -qO- %s || echo FAILED; done", n, url))
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	m := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		m[strings.TrimSpace(l)]++
	}
	return m, nil
}

// waitAnswers sends n requests from the client pod on h until the answers
// satisfy ok (a nil error), or fails the test at the deadline.
func (tf *testFleet) waitAnswers(h *Host, timeout time.Duration, what, url string, n int, ok func(map[string]int) error) {
	tf.t.Helper()
	waitFor(tf.t, timeout, what, func() error {
		got, err := tf.hits(h, url, n)
		if err != nil {
			return err
		}
		if err := ok(got); err != nil {
			return fmt.Errorf("answers %v: %v", got, err)
		}
		return nil
	})
}

// without fails answers that include name or a failure.
func without(name string) func(map[string]int) error {
	return func(got map[string]int) error {
		if got[name] > 0 || got["FAILED"] > 0 {
			return fmt.Errorf("want none from %s and no failure", name)
		}
		return nil
	}
}

// with fails answers that never came from name.
func with(name string) func(map[string]int) error {
	return func(got map[string]int) error {
		if got[name] == 0 {
			return fmt.Errorf("want some from %s", name)
		}
		return nil
	}
}

func keys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type svcJSON struct {
	Spec struct {
		ClusterIP string `json:"clusterIP"`
		Ports     []struct {
			NodePort int `json:"nodePort"`
		} `json:"ports"`
	} `json:"spec"`
	Status struct {
		LoadBalancer struct {
			Ingress []struct {
				IP string `json:"ip"`
			} `json:"ingress"`
		} `json:"loadBalancer"`
	} `json:"status"`
}

func (tf *testFleet) service(name string) svcJSON {
	tf.t.Helper()
	var s svcJSON
	out := tf.mustEdgectl("get", "svc", name, "-o", "json")
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		tf.t.Fatalf("get svc %s: %v\n%s", name, err, out)
	}
	return s
}

// iptablesSave returns host h's iptables-save output without comments
// and counters.
func iptablesSave(h *Host) string {
	out, _ := inNS(h, "iptables-save")
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			keep = append(keep, regexp.MustCompile(`\[\d+:\d+\]`).ReplaceAllString(l, ""))
		}
	}
	return strings.Join(keep, "\n")
}

func TestServices(t *testing.T) {
	needRoot(t)
	tf := newTestFleet(t, 3)
	w1, w2, w3 := tf.workers[0], tf.workers[1], tf.workers[2]
	pristine := iptablesSave(tf.gw) // a namespace no agent ever touched
	tf.apply(svcWeb)
	tf.waitPlacement("3 web replicas, one per node", 90*time.Second, 3, func(m map[string]int) bool {
		return m[w1.Name] == 1 && m[w2.Name] == 1 && m[w3.Name] == 1
	})
	tf.apply(strings.Replace(svcExtra, "NODE", w2.Name, 1))
	tf.apply(strings.Replace(svcClient, "NODE", w1.Name, 1))
	waitFor(t, 60*time.Second, "the client pod running", func() error {
		for _, p := range tf.pods("") {
			if p.Metadata.Name == "client" && p.Status.Phase == "Running" {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
	web := map[string]podJSON{} // node -> its replica
	for _, p := range tf.pods("app=web") {
		web[p.Spec.NodeName] = p
	}
	var client podJSON
	for _, p := range tf.pods("") {
		if p.Metadata.Name == "client" {
			client = p
		}
	}
	clusterIP := tf.service("web").Spec.ClusterIP

	t.Run("PodNetwork", func(t *testing.T) {
		tf.t = t
		seen := map[string]string{}
		for _, p := range append(tf.pods("app=web"), client) {
			if other, dup := seen[p.Status.PodIP]; dup || p.Status.PodIP == "" {
				t.Fatalf("pod %s has IP %q, also %q's", p.Metadata.Name, p.Status.PodIP, other)
			}
			seen[p.Status.PodIP] = p.Metadata.Name
		}
		// w1 -> w3 by pod IP, and w3's pod sees w1's pod's address.
		out, err := tf.execIn(w1, "client", "timeout 5 wget -qO- http://"+web[w3.Name].Status.PodIP+":8080/cgi-bin/ip")
		// httpd listens on IPv6 too: the peer shows as [::ffff:10.42.0.3].
		peer := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(out), "[::ffff:"), "]")
		if err != nil || peer != client.Status.PodIP {
			t.Fatalf("pod on %s -> pod on %s: %v %q; want the sender's own address %s", w1.Name, w3.Name, err, out, client.Status.PodIP)
		}
	})

	t.Run("Outside", func(t *testing.T) {
		tf.t = t
		// The gateway has no route to the pod network: only masquerading
		// lets a pod reach it.
		www := t.TempDir()
		if err := os.WriteFile(www+"/index.html", []byte("outside\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		srv, err := tf.Start(tf.gw, "gw-httpd", "busybox", "httpd", "-f", "-p", "18099", "-h", www)
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Stop(syscall.SIGTERM, 5*time.Second)
		waitFor(t, 20*time.Second, "a pod reaching a host outside the cluster", func() error {
			out, err := tf.execIn(w1, "client", "timeout 3 wget -qO- http://"+tf.gw.IP+":18099/")
			if err != nil || strings.TrimSpace(out) != "outside" {
				return fmt.Errorf("%v %q", err, out)
			}
			return nil
		})
	})

	t.Run("ClusterIP", func(t *testing.T) {
		tf.t = t
		want := []string{web[w1.Name].Metadata.Name, web[w2.Name].Metadata.Name, web[w3.Name].Metadata.Name}
		sort.Strings(want)
		var got map[string]int
		waitFor(t, 30*time.Second, "30 requests to the cluster IP reaching all 3 replicas", func() (err error) {
			if got, err = tf.hits(w1, "http://"+clusterIP+"/", 30); err != nil {
				return err
			}
			if fmt.Sprint(keys(got)) != fmt.Sprint(want) {
				return fmt.Errorf("answers %v, want %v", got, want)
			}
			return nil
		})
		t.Logf("30 requests to %s: %v", clusterIP, got)
		for _, name := range []string{"web", "web.default", "web.default.svc", "web.default.svc.cluster.local"} {
			out, err := tf.execIn(w1, "client", "timeout 5 wget -qO- http://"+name+"/")
			if err != nil || !strings.HasPrefix(strings.TrimSpace(out), "web-") {
				t.Errorf("http://%s/ from a pod: %v %q", name, err, out)
			}
		}
		out, err := tf.execIn(w1, "client", "env")
		if err != nil || !strings.Contains(out, "WEB_SERVICE_HOST="+clusterIP) || !strings.Contains(out, "WEB_SERVICE_PORT=80") {
			t.Errorf("service variables in the client: %v\n%s", err, out)
		}
		// From the node itself (OUTPUT path), not only from pods.
		if out, err := inNS(w2, "timeout", "5", "busybox", "wget", "-qO-", "http://"+clusterIP+"/"); err != nil || !strings.HasPrefix(out, "web-") {
			t.Errorf("cluster IP from node %s: %v %q", w2.Name, err, out)
		}
	})

	t.Run("NodePortAndLoadBalancer", func(t *testing.T) {
		tf.t = t
		var lb svcJSON
		waitFor(t, 20*time.Second, "the LoadBalancer to list the nodes", func() error {
			if lb = tf.service("web-lb"); len(lb.Status.LoadBalancer.Ingress) != 3 {
				return fmt.Errorf("ingress %+v", lb.Status.LoadBalancer.Ingress)
			}
			return nil
		})
		for _, w := range tf.workers {
			for _, url := range []string{fmt.Sprintf("http://%s:30080/", w.IP), fmt.Sprintf("http://%s:8088/", w.IP)} {
				waitFor(t, 20*time.Second, url+" from the gateway", func() error {
					out, err := inNS(tf.gw, "timeout", "3", "busybox", "wget", "-qO-", url)
					if err != nil || !strings.HasPrefix(out, "web-") {
						return fmt.Errorf("%v %q", err, out)
					}
					return nil
				})
			}
		}
	})

	t.Run("Headless", func(t *testing.T) {
		tf.t = t
		out, err := tf.execIn(w1, "client", "nslookup web-headless.default.svc.cluster.local")
		for _, p := range web {
			if !strings.Contains(out, p.Status.PodIP) {
				t.Errorf("the headless name does not list %s (%s): %v\n%s", p.Metadata.Name, p.Status.PodIP, err, out)
			}
		}
		if strings.Contains(out, clusterIP) {
			t.Errorf("a headless name resolves to a cluster IP:\n%s", out)
		}
	})

	t.Run("SessionAffinity", func(t *testing.T) {
		tf.t = t
		ip := tf.service("web-sticky").Spec.ClusterIP
		got, err := tf.hits(w1, "http://"+ip+"/", 20)
		if err != nil || len(got) != 1 || got["FAILED"] > 0 {
			t.Fatalf("20 requests with ClientIP affinity reached %v (%v), want one replica", got, err)
		}
	})

	t.Run("ExternalTrafficPolicyLocal", func(t *testing.T) {
		tf.t = t
		// Local keeps the client's address and answers from the node's
		// own replica; Cluster masquerades (the replica sees a node).
		for _, w := range tf.workers {
			var out string
			waitFor(t, 20*time.Second, "NodePort 30081 on "+w.Name, func() (err error) {
				out, err = inNS(tf.gw, "timeout", "3", "busybox", "wget", "-qO-", fmt.Sprintf("http://%s:30081/cgi-bin/ip", w.IP))
				return err
			})
			if peer := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(out), "[::ffff:"), "]"); peer != tf.gw.IP {
				t.Errorf("Local policy on %s: the replica saw %q, want the gateway's %s", w.Name, peer, tf.gw.IP)
			}
			out, _ = inNS(tf.gw, "timeout", "3", "busybox", "wget", "-qO-", fmt.Sprintf("http://%s:30081/", w.IP))
			if strings.TrimSpace(out) != web[w.Name].Metadata.Name {
				t.Errorf("Local policy on %s answered from %q, want its own replica %s", w.Name, out, web[w.Name].Metadata.Name)
			}
		}
		out, _ := inNS(tf.gw, "timeout", "3", "busybox", "wget", "-qO-", fmt.Sprintf("http://%s:30080/cgi-bin/ip", w1.IP))
		if strings.Contains(out, tf.gw.IP) {
			t.Errorf("Cluster policy kept the client's address (%q): replies from another node would bypass it", out)
		}
	})

	t.Run("HostPort", func(t *testing.T) {
		tf.t = t
		waitFor(t, 30*time.Second, "hostPort 18080 on "+w2.Name+" from the gateway", func() error {
			out, err := inNS(tf.gw, "timeout", "3", "busybox", "wget", "-qO-", fmt.Sprintf("http://%s:18080/", w2.IP))
			if err != nil || strings.TrimSpace(out) != "hostport" {
				return fmt.Errorf("%v %q", err, out)
			}
			return nil
		})
	})

	t.Run("AgentRestart", func(t *testing.T) {
		tf.t = t
		// Rules stay while the agent is away, and the restarted agent
		// takes them over.
		tf.Proc(w1.Name+"-edgeagent").Stop(syscall.SIGTERM, 10*time.Second)
		got, err := tf.hits(w1, "http://"+clusterIP+"/", 10)
		if err != nil || got["FAILED"] > 0 {
			t.Errorf("with the agent stopped, the service answered %v (%v)", got, err)
		}
		if _, err := tf.StartAgent(w1, tf.token, ""); err != nil {
			t.Fatal(err)
		}
		tf.waitReady(w1.Name)
		// Names come back with the agent's DNS server, a moment after the
		// node is Ready (the rules never went away).
		start := time.Now()
		tf.waitAnswers(w1, 20*time.Second, "the service by name after the agent restarted", "http://web/", 10, func(got map[string]int) error {
			for k := range got {
				if !strings.HasPrefix(k, "web-") {
					return fmt.Errorf("a failure")
				}
			}
			return nil
		})
		t.Logf("names resolved again %s after the restarted agent's node was Ready", time.Since(start).Round(10*time.Millisecond))
	})

	t.Run("BadInput", func(t *testing.T) {
		tf.t = t
		for _, tt := range []struct{ doc, want string }{
			{"apiVersion: v1\nkind: Service\nmetadata: {name: clash}\nspec: {type: NodePort, selector: {app: web}, ports: [{port: 80, nodePort: 30080}]}\n", "30080/TCP is already used by service default/web-np"},
			{"apiVersion: v1\nkind: Service\nmetadata: {name: range}\nspec: {type: NodePort, selector: {app: web}, ports: [{port: 80, nodePort: 8080}]}\n", "must be in the range 30000-32767"},
			{"apiVersion: v1\nkind: Service\nmetadata: {name: outside}\nspec: {clusterIP: 10.99.0.1, selector: {app: web}, ports: [{port: 80}]}\n", "outside the service range 10.43.0.0/16"},
		} {
			path := fmt.Sprintf("%s/bad%d.yaml", tf.Dir, time.Now().UnixNano())
			if err := os.WriteFile(path, []byte(tt.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			_, errOut, err := tf.edgectl("apply", "-f", path)
			if err == nil || !strings.Contains(errOut, tt.want) {
				t.Errorf("apply %q: %v %q, want %q", tt.doc, err, errOut, tt.want)
			}
		}
		tf.apply("apiVersion: v1\nkind: Service\nmetadata: {name: nosel}\nspec: {ports: [{port: 80}]}\n")
		if out := tf.mustEdgectl("describe", "svc", "nosel"); !strings.Contains(out, "has no selector") {
			t.Errorf("describe of a selector-less service does not explain:\n%s", out)
		}
	})

	t.Run("Readiness", func(t *testing.T) {
		tf.t = t
		victim := web[w2.Name].Metadata.Name
		if out, err := tf.execIn(w2, victim, "touch /tmp/unready"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		start := time.Now()
		tf.waitAnswers(w1, 30*time.Second, "the unready replica to get no traffic", "http://"+clusterIP+"/", 20, without(victim))
		t.Logf("an unready replica left the service in %s", time.Since(start).Round(100*time.Millisecond))
		tf.execIn(w2, victim, "rm /tmp/unready")
		tf.waitAnswers(w1, 30*time.Second, "the replica to get traffic again", "http://"+clusterIP+"/", 30, with(victim))
	})

	t.Run("NodeLost", func(t *testing.T) {
		tf.t = t
		lost := web[w3.Name].Metadata.Name
		tf.waitAnswers(w1, 30*time.Second, "the replica on "+w3.Name+" in rotation", "http://"+clusterIP+"/", 20, with(lost))
		if err := tf.LinkDown(w3); err != nil {
			t.Fatal(err)
		}
		up := false
		defer func() {
			if !up {
				tf.LinkUp(w3)
			}
		}()
		start := time.Now()
		tf.waitAnswers(w1, 60*time.Second, "the lost node's replica to leave the service", "http://"+clusterIP+"/", 20, without(lost))
		t.Logf("a lost node's replica left the service %s after its link went down", time.Since(start).Round(100*time.Millisecond))
		up = true
		if err := tf.LinkUp(w3); err != nil {
			t.Fatal(err)
		}
		tf.waitReady(w3.Name)
	})

	t.Run("MasterDown", func(t *testing.T) {
		tf.t = t
		pods := tf.pods("")
		for _, p := range pods { // execIn looks containers up through the API
			tf.execIn(w1, p.Metadata.Name, "true")
		}
		tf.Proc(tf.master.Name+"-edgemaster").Stop(syscall.SIGTERM, 10*time.Second)
		defer func() {
			if _, err := tf.StartMaster(tf.master); err != nil {
				t.Fatal(err)
			}
			for _, w := range tf.workers {
				tf.waitReady(w.Name)
			}
		}()
		got, err := tf.hits(w1, "http://web/", 10)
		if err != nil || got["FAILED"] > 0 || len(got) == 0 {
			t.Fatalf("with the master down, the service answered %v (%v)", got, err)
		}
		// A local replica failing its probe leaves its own node's
		// endpoints with no master to tell: the agent knows its pods.
		var local string
		for _, p := range pods {
			if p.Spec.NodeName == w1.Name && strings.HasPrefix(p.Metadata.Name, "web-") {
				local = p.Metadata.Name
			}
		}
		if local == "" {
			t.Fatal("no web replica on " + w1.Name)
		}
		if out, err := tf.execIn(w1, local, "touch /tmp/unready"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		tf.waitAnswers(w1, 20*time.Second, "the unready local replica to leave "+w1.Name+"'s rules, master down", "http://"+clusterIP+"/", 10, without(local))
		tf.execIn(w1, local, "rm /tmp/unready")
		tf.waitAnswers(w1, 20*time.Second, "the local replica back, master down", "http://"+clusterIP+"/", 20, with(local))
	})

	t.Run("ScaleDown", func(t *testing.T) {
		tf.t = t
		tf.apply(strings.Replace(svcWeb, "replicas: 3", "replicas: 1", 1))
		start := time.Now()
		tf.waitAnswers(w1, 60*time.Second, "all traffic on the one replica left", "http://"+clusterIP+"/", 10, func(got map[string]int) error {
			if len(got) != 1 || got["FAILED"] > 0 {
				return fmt.Errorf("want one replica")
			}
			return nil
		})
		t.Logf("scale 3 -> 1: traffic on one replica %s after the apply", time.Since(start).Round(100*time.Millisecond))
	})

	t.Run("DeleteAndCleanup", func(t *testing.T) {
		tf.t = t
		for _, s := range []string{"web", "web-np", "web-lb", "nosel", "web-headless", "web-sticky", "web-local"} {
			tf.mustEdgectl("delete", "svc", s)
		}
		waitFor(t, 30*time.Second, "no service chain left on any node", func() error {
			for _, w := range tf.workers {
				if rules := iptablesSave(w); strings.Contains(rules, "EDGE-SVC-") || strings.Contains(rules, "EDGE-SEP-") {
					return fmt.Errorf("%s still has service chains:\n%s", w.Name, rules)
				}
			}
			return nil
		})
		// Uninstall w3: stop its pods, the agent, then --cleanup.
		tf.mustEdgectl("delete", "deployment", "web")
		tf.mustEdgectl("delete", "pod", "client")
		tf.mustEdgectl("delete", "pod", "hostport")
		waitFor(t, 60*time.Second, "the pods gone", func() error {
			if n := len(tf.pods("")); n != 0 {
				return fmt.Errorf("%d pods", n)
			}
			return nil
		})
		tf.Proc(w3.Name+"-edgeagent").Stop(syscall.SIGTERM, 10*time.Second)
		out, err := inNS(w3, tf.Bin+"/edgeagent", "--cleanup", "--data-dir", filepath.Join(tf.Dir, w3.Name, "agent"))
		if err != nil {
			t.Fatalf("edgeagent --cleanup: %v\n%s", err, out)
		}
		if after := iptablesSave(w3); after != pristine {
			t.Errorf("after --cleanup, %s's rules differ from a fresh namespace's:\n--- fresh\n%s\n--- after\n%s", w3.Name, pristine, after)
		}
		if out, _ := inNS(w3, "ip", "route", "show", "proto", "237"); strings.TrimSpace(out) != "" {
			t.Errorf("routes left after --cleanup:\n%s", out)
		}
		if out, _ := inNS(w3, "ip", "link", "show", "edge0"); !strings.Contains(out, "does not exist") {
			t.Errorf("the pod bridge is left after --cleanup:\n%s", out)
		}
	})
}
