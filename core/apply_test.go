package core_test

import (
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

func decode(t *testing.T, docs ...string) []core.Object {
	t.Helper()
	objs, err := core.DecodeManifests([]core.ManifestFile{{Name: "test.yaml", Data: []byte(strings.Join(docs, "---\n"))}})
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func apply(t *testing.T, s core.Store, docs ...string) ([]core.ApplyResult, error) {
	t.Helper()
	return core.Apply(ctx, s, decode(t, docs...), t0, core.NetworkConfig{})
}

func mustApply(t *testing.T, s core.Store, docs ...string) []core.ApplyResult {
	t.Helper()
	res, err := apply(t, s, docs...)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func results(res []core.ApplyResult) string {
	var out []string
	for _, r := range res {
		out = append(out, r.String())
	}
	return strings.Join(out, ", ")
}

func mustGet(t *testing.T, s core.Store, kind core.Kind, ns, name string) core.Object {
	t.Helper()
	o, err := s.Get(ctx, core.Key{Kind: kind, Namespace: ns, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func newStore(t *testing.T) *core.MemoryStore {
	s := core.NewMemoryStore()
	s.Now = func() time.Time { return t0 }
	t.Cleanup(func() {
		if err := s.Verify(); err != nil {
			t.Error(err)
		}
	})
	return s
}

const (
	nsTeam  = "apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n"
	podYAML = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {a: b}}\nspec:\n  containers: [{name: c, image: demo:1}]\n"
	svcYAML = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n"
)

func TestApply_CreatedConfiguredUnchanged(t *testing.T) {
	s := newStore(t)
	res := mustApply(t, s, deployment("web", 2, ""), svcYAML, podYAML)
	// Results come in the order objects are created: services before workloads before pods.
	if got, want := results(res), "service/web created, deployment.apps/web created, pod/p created"; got != want {
		t.Fatalf("results %q, want %q", got, want)
	}
	d := mustGet(t, s, core.KindDeployment, "default", "web")
	if d.GetMeta().Generation != 1 || d.GetMeta().UID == "" {
		t.Fatalf("created %+v", d.GetMeta())
	}
	writes := s.Writes()
	if got := results(mustApply(t, s, deployment("web", 2, ""), svcYAML, podYAML)); got != "service/web unchanged, deployment.apps/web unchanged, pod/p unchanged" {
		t.Fatalf("re-apply: %q", got)
	}
	if s.Writes() != writes {
		t.Fatal("an unchanged apply wrote")
	}
	// The scheduler binds the pod: the same manifest is still unchanged.
	if err := s.Update(ctx, func(tx core.Tx) error {
		o, err := tx.Get(core.Key{Kind: core.KindPod, Namespace: "default", Name: "p"})
		if err != nil {
			return err
		}
		p := core.Clone(o.(*core.Pod))
		p.Spec.NodeName = "n1"
		return tx.Put(p)
	}); err != nil {
		t.Fatal(err)
	}
	if got := results(mustApply(t, s, podYAML)); got != "pod/p unchanged" {
		t.Fatalf("re-apply of a scheduled pod: %q", got)
	}
	if got := results(mustApply(t, s, deployment("web", 3, ""))); got != "deployment.apps/web configured" {
		t.Fatalf("scale: %q", got)
	}
	d2 := mustGet(t, s, core.KindDeployment, "default", "web").(*core.Deployment)
	if *d2.Spec.Replicas != 3 || d2.Metadata.Generation != 2 || d2.Metadata.UID != d.GetMeta().UID {
		t.Fatalf("configured %+v", d2.Metadata)
	}
	// Labels and annotations alone configure without a new generation.
	labelled := strings.Replace(deployment("web", 3, ""), "metadata: {name: web}", "metadata: {name: web, labels: {tier: front}}", 1)
	if got := results(mustApply(t, s, labelled)); got != "deployment.apps/web configured" {
		t.Fatalf("label: %q", got)
	}
	d3 := mustGet(t, s, core.KindDeployment, "default", "web").(*core.Deployment)
	if d3.Metadata.Labels["tier"] != "front" || d3.Metadata.Generation != 2 {
		t.Fatalf("labelled %+v", d3.Metadata)
	}
	if got := results(mustApply(t, s, strings.Replace(podYAML, "{a: b}", "{a: c}", 1))); got != "pod/p configured" {
		t.Fatalf("pod labels: %q", got)
	}
}

// Status and server-set metadata in what is applied are ignored, and the
// objects handed to Apply are not changed.
func TestApply_IgnoresServerFields(t *testing.T) {
	s := newStore(t)
	in := decode(t, deployment("web", 2, ""), podYAML)
	d := in[0].(*core.Deployment)
	d.Metadata.UID, d.Metadata.ResourceVersion, d.Metadata.Generation = "forged", "99", 9
	d.Metadata.DeletionTimestamp = core.NewTime(t0)
	d.Status.ReadyReplicas = 5
	p := in[1].(*core.Pod)
	p.Status.Phase = core.PodRunning
	if _, err := core.Apply(ctx, s, in, t0, core.NetworkConfig{}); err != nil {
		t.Fatal(err)
	}
	got := mustGet(t, s, core.KindDeployment, "default", "web").(*core.Deployment)
	if got.Metadata.UID == "forged" || got.Metadata.Generation != 1 || got.Metadata.DeletionTimestamp != nil || got.Status.ReadyReplicas != 0 {
		t.Fatalf("stored %+v %+v", got.Metadata, got.Status)
	}
	if gp := mustGet(t, s, core.KindPod, "default", "p").(*core.Pod); gp.Status.Phase != core.PodPending {
		t.Fatalf("pod phase %s, want Pending", gp.Status.Phase)
	}
	if d.Metadata.UID != "forged" || d.Metadata.ResourceVersion != "99" {
		t.Fatal("Apply changed its input")
	}
	// A stale resourceVersion in a later apply does not conflict: apply is
	// last-writer-wins on the stored object.
	in = decode(t, deployment("web", 4, ""))
	in[0].GetMeta().ResourceVersion = "1"
	if res, err := core.Apply(ctx, s, in, t0, core.NetworkConfig{}); err != nil || res[0].Action != "configured" {
		t.Fatalf("apply with a stale resourceVersion: %v %v", res, err)
	}
}

func TestApply_Errors(t *testing.T) {
	inTeam := strings.Replace(deployment("web", 1, ""), "metadata: {name: web}", "metadata: {name: web, namespace: team}", 1)
	for _, tt := range []struct {
		name   string
		before []string // applied first
		delete *core.Key
		docs   []string
		code   string
		msg    string
	}{
		{name: "missing namespace", docs: []string{svcYAML, inTeam}, code: core.ENOTFOUND, msg: `namespace "team" not found`},
		{name: "pod spec is immutable", before: []string{podYAML},
			docs: []string{svcYAML, strings.Replace(podYAML, "demo:1", "demo:2", 1)}, code: core.EINVALID, msg: "a pod's spec cannot change"},
		{name: "object being deleted", before: []string{nsTeam, inTeam}, delete: &core.Key{Kind: core.KindNamespace, Name: "team"},
			docs: []string{nsTeam}, code: core.ECONFLICT, msg: "is being deleted"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			if len(tt.before) > 0 {
				mustApply(t, s, tt.before...)
			}
			if tt.delete != nil {
				// A namespace being deleted, as a controller would see it
				// before its contents are gone.
				err := s.Update(ctx, func(tx core.Tx) error {
					o, err := tx.Get(*tt.delete)
					if err != nil {
						return err
					}
					n := core.Clone(o)
					n.GetMeta().DeletionTimestamp = core.NewTime(t0)
					return tx.Put(n)
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			rev := s.Revision()
			res, err := apply(t, s, tt.docs...)
			if core.ErrorCode(err) != tt.code || !strings.Contains(core.ErrorMessage(err), tt.msg) || res != nil {
				t.Fatalf("apply = %v, %v; want %s containing %q", res, err, tt.code, tt.msg)
			}
			if s.Revision() != rev {
				t.Fatal("a failed apply wrote something: it must be all or nothing")
			}
			if _, err := s.Get(ctx, core.Key{Kind: core.KindService, Namespace: "default", Name: "web"}); core.ErrorCode(err) != core.ENOTFOUND {
				t.Fatalf("the service of a failed apply was stored: %v", err)
			}
		})
	}
}

// A namespace applied with its contents is created first, whatever the
// order of the documents.
func TestApply_NamespaceWithItsContents(t *testing.T) {
	s := newStore(t)
	inTeam := strings.Replace(deployment("web", 1, ""), "metadata: {name: web}", "metadata: {name: web, namespace: team}", 1)
	if got := results(mustApply(t, s, inTeam, nsTeam)); got != "namespace/team created, deployment.apps/web created" {
		t.Fatalf("results %q", got)
	}
	if ns := mustGet(t, s, core.KindNamespace, "", "team").(*core.Namespace); ns.Status.Phase != "Active" {
		t.Fatalf("namespace phase %q", ns.Status.Phase)
	}
}

func TestApply_ServiceClusterIP(t *testing.T) {
	s := newStore(t)
	mustApply(t, s, svcYAML)
	// The controllers allocate an address.
	err := s.Update(ctx, func(tx core.Tx) error {
		o, _ := tx.Get(core.Key{Kind: core.KindService, Namespace: "default", Name: "web"})
		svc := core.Clone(o.(*core.Service))
		svc.Spec.ClusterIP = "10.43.0.10"
		return tx.Put(svc)
	})
	if err != nil {
		t.Fatal(err)
	}
	ip := func() string {
		return mustGet(t, s, core.KindService, "default", "web").(*core.Service).Spec.ClusterIP
	}
	if got := results(mustApply(t, s, svcYAML)); got != "service/web unchanged" || ip() != "10.43.0.10" {
		t.Fatalf("re-apply without clusterIP: %q, ip %q", got, ip())
	}
	if got := results(mustApply(t, s, strings.Replace(svcYAML, "port: 80", "port: 81", 1))); got != "service/web configured" || ip() != "10.43.0.10" {
		t.Fatalf("change without clusterIP: %q, ip %q", got, ip())
	}
	// The address is immutable, as in Kubernetes.
	_, err = apply(t, s, strings.Replace(svcYAML, "ports:", "clusterIP: 10.43.0.99\n  ports:", 1))
	if core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), "spec.clusterIP: cannot change from 10.43.0.10 to 10.43.0.99") || ip() != "10.43.0.10" {
		t.Fatalf("changing the clusterIP: %v, ip %q", err, ip())
	}
}

// Re-applying a service keeps each port's node port (matched by port and
// protocol), never gives two ports one node port, and takes clusterIPs
// for clusterIP; a LoadBalancer may not take the master's own ports.
func TestApply_ServiceReapply(t *testing.T) {
	s := newStore(t)
	get := func(name string) *core.Service {
		return mustGet(t, s, core.KindService, "default", name).(*core.Service)
	}
	mustApply(t, s, "apiVersion: v1\nkind: Service\nmetadata: {name: np}\nspec:\n  type: NodePort\n  ports: [{name: http, port: 80}]\n")
	if p := get("np").Spec.Ports[0].NodePort; p != 30000 {
		t.Fatalf("node port %d", p)
	}
	mustApply(t, s, "apiVersion: v1\nkind: Service\nmetadata: {name: np}\nspec:\n  type: NodePort\n  ports: [{name: metrics, port: 9100}, {name: web, port: 80}]\n")
	ports := get("np").Spec.Ports
	if ports[1].NodePort != 30000 || ports[0].NodePort == 30000 || ports[0].NodePort == 0 {
		t.Fatalf("after adding a port: %+v; want port 80 to keep 30000 and 9100 to get another", ports)
	}
	// A named port that takes the kept one: the kept one moves.
	mustApply(t, s, "apiVersion: v1\nkind: Service\nmetadata: {name: np}\nspec:\n  type: NodePort\n  ports: [{name: web, port: 80}, {name: m, port: 9100, nodePort: 30000}]\n")
	ports = get("np").Spec.Ports
	if ports[1].NodePort != 30000 || ports[0].NodePort == 30000 {
		t.Fatalf("two ports share a node port: %+v", ports)
	}
	mustApply(t, s, "apiVersion: v1\nkind: Service\nmetadata: {name: ips}\nspec:\n  clusterIPs: [10.43.7.7]\n  ports: [{port: 80}]\n")
	if ip := get("ips").Spec.ClusterIP; ip != "10.43.7.7" {
		t.Fatalf("clusterIPs [10.43.7.7] gave %q", ip)
	}
	cfg := core.DefaultNetworkConfig()
	cfg.ReservedPorts = []int32{7443, 8883}
	_, err := core.Apply(ctx, s, decode(t, "apiVersion: v1\nkind: Service\nmetadata: {name: broker}\nspec:\n  type: LoadBalancer\n  ports: [{port: 8883}]\n"), t0, cfg)
	if err == nil || !strings.Contains(err.Error(), "spec.ports[0].port: 8883 is one of the master's own ports") {
		t.Fatalf("a LoadBalancer on the master's MQTT port: %v", err)
	}
}

// Services get their cluster IP and node ports at apply, from the
// configured ranges; taken or out-of-range ones are refused and nothing is
// stored.
func TestApply_ServiceAllocation(t *testing.T) {
	s := newStore(t)
	svc := func(name, extra string) string {
		return "apiVersion: v1\nkind: Service\nmetadata: {name: " + name + "}\nspec:\n  selector: {app: web}\n  ports: [{port: 80" + extra + "}]\n"
	}
	get := func(name string) *core.Service {
		return mustGet(t, s, core.KindService, "default", name).(*core.Service)
	}
	mustApply(t, s, svc("a", ""))
	if ip := get("a").Spec.ClusterIP; ip != "10.43.0.11" {
		t.Fatalf("first cluster IP %q, want 10.43.0.11 (.10 stays free for manifests written for k3s)", ip)
	}
	mustApply(t, s, strings.Replace(svc("np", ", nodePort: 30080"), "spec:", "spec:\n  type: NodePort", 1))
	mustApply(t, s, strings.Replace(svc("lb", ""), "spec:", "spec:\n  type: LoadBalancer", 1))
	if np, lb := get("np").Spec.Ports[0].NodePort, get("lb").Spec.Ports[0].NodePort; np != 30080 || lb != 30000 {
		t.Fatalf("node ports: np %d (want 30080), lb %d (want 30000)", np, lb)
	}
	// Re-applying without a node port keeps the allocated one.
	if got := results(mustApply(t, s, strings.Replace(svc("lb", ""), "spec:", "spec:\n  type: LoadBalancer", 1))); got != "service/lb unchanged" {
		t.Fatalf("re-apply: %s", got)
	}
	mustApply(t, s, svc("headless", "")+"  clusterIP: None\n")
	if ip := get("headless").Spec.ClusterIP; ip != "None" {
		t.Fatalf("headless service got %q", ip)
	}
	for _, tt := range []struct{ doc, want string }{
		{svc("out", "") + "  clusterIP: 10.99.0.1\n", `spec.clusterIP: 10.99.0.1 is outside the service range 10.43.0.0/16`},
		{svc("taken", "") + "  clusterIP: 10.43.0.11\n", `spec.clusterIP: 10.43.0.11 is already the address of service default/a`},
		{svc("bcast", "") + "  clusterIP: 10.43.255.255\n", `network or broadcast address`},
		{strings.Replace(svc("clash", ", nodePort: 30080"), "spec:", "spec:\n  type: NodePort", 1), `spec.ports[0].nodePort: 30080/TCP is already used by service default/np`},
		{strings.Replace(svc("range", ", nodePort: 8080"), "spec:", "spec:\n  type: NodePort", 1), `spec.ports[0].nodePort: 8080 must be in the range 30000-32767`},
	} {
		_, err := apply(t, s, tt.doc)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("apply %q: %v, want %q", tt.doc, err, tt.want)
		}
	}
	if objs, _ := s.List(ctx, core.KindService, "default"); len(objs) != 4 {
		t.Fatalf("%d services stored, want the 4 accepted", len(objs))
	}
	// UDP and TCP node ports are separate spaces.
	mustApply(t, s, strings.Replace(svc("dns", ", nodePort: 30080, protocol: UDP"), "spec:", "spec:\n  type: NodePort", 1))
	// A custom range.
	cfg, err := core.ParseNetworkConfig("10.42.0.0/16", 24, "10.96.0.0/24")
	if err != nil {
		t.Fatal(err)
	}
	objs := decode(t, svc("custom", ""))
	if _, err := core.Apply(ctx, s, objs, t0, cfg); err != nil || get("custom").Spec.ClusterIP != "10.96.0.11" {
		t.Fatalf("custom service range: %v, ip %q", err, get("custom").Spec.ClusterIP)
	}
}

func TestApply_Warnings(t *testing.T) {
	s := newStore(t)
	annotated := func(a string) string {
		return strings.Replace(deployment("web", 1, ""), "    metadata: {labels: {app: web}}",
			"    metadata:\n      labels: {app: web}\n      annotations: {"+a+"}", 1)
	}
	for _, tt := range []struct {
		doc  string
		want []string
	}{
		{annotated(`edge.io/reconnect-policy: sometimes`), []string{`annotation edge.io/reconnect-policy="sometimes" is not keep-replacement or keep-original`}},
		{annotated(`edge.io/reconnect-policy: keep-original`), nil},
		{annotated(`edge.io/node-lost-grace-seconds: "-1"`), []string{"annotation edge.io/node-lost-grace-seconds=\"-1\" is not a number of seconds"}},
		{annotated(`edge.io/node-lost-grace-seconds: "30"`), nil},
		{deployment("web", 1, "") + "        ports: [{containerPort: 80, hostPort: 8080}]\n", nil},
		{strings.Replace(svcYAML, "spec:\n", "spec:\n  type: LoadBalancer\n  loadBalancerIP: 192.168.1.240\n", 1), []string{"spec.loadBalancerIP: ignored"}},
		{strings.Replace(podYAML, "image: demo:1}", "image: demo:1, livenessProbe: {httpGet: {port: 443, scheme: HTTPS}}}", 1),
			[]string{"spec.containers[0].livenessProbe.httpGet.scheme: HTTPS probes do not verify certificates"}},
		{svcYAML, nil},
		{strings.Replace(deployment("web", 1, ""), "  replicas: 1", "  replicas: 1\n  minReadySeconds: 10", 1), []string{"spec.minReadySeconds: not enforced yet"}},
		{deployment("web", 1, "      volumes: [{name: v, emptyDir: {medium: Memory}}]\n"), []string{"spec.template.spec.volumes[0].emptyDir: medium and sizeLimit are not enforced yet"}},
	} {
		res, err := apply(t, s, tt.doc)
		if err != nil {
			t.Fatal(err)
		}
		w := res[0].Warnings
		if len(w) != len(tt.want) {
			t.Fatalf("warnings %q, want %q", w, tt.want)
		}
		for i := range w {
			if !strings.HasPrefix(w[i], tt.want[i]) {
				t.Fatalf("warning %q, want %q...", w[i], tt.want[i])
			}
		}
	}
}

// boundPod stores a pod bound to node (a node object is created unless
// node is "" or starts with "gone").
func boundPod(t *testing.T, s core.Store, ns, name, node string) {
	t.Helper()
	err := s.Update(ctx, func(tx core.Tx) error {
		if node != "" && !strings.HasPrefix(node, "gone") {
			if _, err := tx.Get(core.Key{Kind: core.KindNode, Name: node}); core.ErrorCode(err) == core.ENOTFOUND {
				if err := tx.Create(&core.Node{TypeMeta: core.TypeMeta{APIVersion: "v1", Kind: core.KindNode}, Metadata: core.ObjectMeta{Name: node}}); err != nil {
					return err
				}
			}
		}
		return tx.Create(&core.Pod{TypeMeta: core.TypeMeta{APIVersion: "v1", Kind: core.KindPod},
			Metadata: core.ObjectMeta{Name: name, Namespace: ns},
			Spec:     core.PodSpec{NodeName: node, Containers: []core.Container{{Name: "c", Image: "demo:1"}}}})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestDelete(t *testing.T) {
	podKey := func(ns, name string) core.Key { return core.Key{Kind: core.KindPod, Namespace: ns, Name: name} }
	later := t0.Add(time.Minute)
	t.Run("unbound pod goes at once", func(t *testing.T) {
		s := newStore(t)
		boundPod(t, s, "default", "p", "")
		if err := core.Delete(ctx, s, podKey("default", "p"), later); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, podKey("default", "p")); core.ErrorCode(err) != core.ENOTFOUND {
			t.Fatalf("get: %v", err)
		}
	})
	t.Run("bound pod terminates", func(t *testing.T) {
		s := newStore(t)
		boundPod(t, s, "default", "p", "n1")
		for i := 0; i < 2; i++ { // a second delete keeps the first time
			if err := core.Delete(ctx, s, podKey("default", "p"), later.Add(time.Duration(i)*time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
		p := mustGet(t, s, core.KindPod, "default", "p").(*core.Pod)
		if !p.Terminating() || !p.Metadata.DeletionTimestamp.Equal(later) {
			t.Fatalf("deletionTimestamp %v, want %v", p.Metadata.DeletionTimestamp, later)
		}
	})
	t.Run("pod of a deleted node goes at once", func(t *testing.T) {
		s := newStore(t)
		boundPod(t, s, "default", "p", "gone")
		if err := core.Delete(ctx, s, podKey("default", "p"), later); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, podKey("default", "p")); core.ErrorCode(err) != core.ENOTFOUND {
			t.Fatalf("get: %v", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		s := newStore(t)
		for _, k := range []core.Key{podKey("default", "p"), {Kind: core.KindNamespace, Name: "team"}, webKey} {
			if err := core.Delete(ctx, s, k, later); core.ErrorCode(err) != core.ENOTFOUND {
				t.Fatalf("delete %s: %v", k, err)
			}
		}
	})
	t.Run("default namespace refused", func(t *testing.T) {
		s := newStore(t)
		mustApply(t, s, svcYAML)
		err := core.Delete(ctx, s, core.Key{Kind: core.KindNamespace, Name: "default"}, later)
		if core.ErrorCode(err) != core.EINVALID {
			t.Fatalf("err = %v, want EINVALID", err)
		}
		mustGet(t, s, core.KindNamespace, "", "default")
		mustGet(t, s, core.KindService, "default", "web")
	})
	t.Run("namespace cascade", func(t *testing.T) {
		s := newStore(t)
		inTeam := func(doc string) string {
			return strings.Replace(doc, "metadata: {name: ", "metadata: {namespace: team, name: ", 1)
		}
		mustApply(t, s, nsTeam, inTeam(deployment("web", 1, "")), inTeam(logsDaemons), inTeam(svcYAML), deployment("web", 1, ""))
		boundPod(t, s, "team", "bound", "n1")
		boundPod(t, s, "team", "unbound", "")
		boundPod(t, s, "default", "other", "n1")
		if err := core.Delete(ctx, s, core.Key{Kind: core.KindNamespace, Name: "team"}, later); err != nil {
			t.Fatal(err)
		}
		for _, k := range []core.Kind{core.KindDeployment, core.KindDaemonSet, core.KindService} {
			if objs, _ := s.List(ctx, k, "team"); len(objs) != 0 {
				t.Fatalf("%d %s left in the deleted namespace", len(objs), k)
			}
		}
		if _, err := s.Get(ctx, core.Key{Kind: core.KindNamespace, Name: "team"}); core.ErrorCode(err) != core.ENOTFOUND {
			t.Fatalf("namespace: %v", err)
		}
		pods, _ := core.ListAs[*core.Pod](ctx, s, core.KindPod, "")
		if len(pods) != 2 || pods[0].Metadata.Name != "other" || pods[0].Terminating() || pods[1].Metadata.Name != "bound" || !pods[1].Terminating() {
			t.Fatalf("pods %v, want other untouched and bound terminating for its agent", names(pods))
		}
		mustGet(t, s, core.KindDeployment, "default", "web")
	})
	t.Run("workload leaves its pods to the controllers", func(t *testing.T) {
		s := newStore(t)
		mustApply(t, s, deployment("web", 1, ""))
		boundPod(t, s, "default", "web-1", "n1")
		if err := core.Delete(ctx, s, webKey, later); err != nil {
			t.Fatal(err)
		}
		if p := mustGet(t, s, core.KindPod, "default", "web-1").(*core.Pod); p.Terminating() {
			t.Fatal("pod terminated by the delete itself")
		}
	})
}

func names[T core.Object](objs []T) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetMeta().Name)
	}
	return out
}

func TestUndo(t *testing.T) {
	setup := func(t *testing.T, images ...string) *core.MemoryStore {
		s := newStore(t)
		for i, img := range images {
			mustApply(t, s, strings.Replace(deployment("web", 1, ""), "demo:1", img, 1))
			// The controller records each template it rolls out.
			err := s.Update(ctx, func(tx core.Tx) error {
				o, _ := tx.Get(webKey)
				d := core.Clone(o.(*core.Deployment))
				_, d.Status = core.PlanDeployment(d, nil, core.PlanEnv{NewName: func(string) string { return "x" }, Now: t0.Add(time.Duration(i) * time.Minute)})
				return tx.Put(d)
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		return s
	}
	image := func(s core.Store) string {
		return mustGet(t, s, core.KindDeployment, "default", "web").(*core.Deployment).Spec.Template.Spec.Containers[0].Image
	}
	for _, tt := range []struct {
		name   string
		images []string
		to     int64
		rev    int64
		image  string
		code   string
	}{
		{name: "previous", images: []string{"v1", "v2", "v3"}, rev: 2, image: "v2"},
		{name: "a given revision", images: []string{"v1", "v2", "v3"}, to: 1, rev: 1, image: "v1"},
		{name: "the current revision changes nothing", images: []string{"v1", "v2"}, to: 2, rev: 2, image: "v2"},
		{name: "no previous revision", images: []string{"v1"}, code: core.EINVALID, image: "v1"},
		{name: "no such revision", images: []string{"v1", "v2"}, to: 7, code: core.ENOTFOUND, image: "v2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := setup(t, tt.images...)
			before := mustGet(t, s, core.KindDeployment, "default", "web").(*core.Deployment)
			writes := s.Writes()
			rev, err := core.Undo(ctx, s, webKey, tt.to)
			if core.ErrorCode(err) != tt.code || (err == nil && rev != tt.rev) {
				t.Fatalf("undo = %d, %v; want %d, %q", rev, err, tt.rev, tt.code)
			}
			if got := image(s); got != tt.image {
				t.Fatalf("template image %s, want %s", got, tt.image)
			}
			after := mustGet(t, s, core.KindDeployment, "default", "web").(*core.Deployment)
			if changed := tt.image != tt.images[len(tt.images)-1]; changed != (s.Writes() != writes) {
				t.Fatalf("template changed %v, writes %d -> %d", changed, writes, s.Writes())
			} else if changed && (after.Metadata.Generation != before.Metadata.Generation+1 || len(after.Status.History) != len(before.Status.History)) {
				t.Fatalf("after undo: generation %d (was %d), history %d (was %d)", after.Metadata.Generation, before.Metadata.Generation,
					len(after.Status.History), len(before.Status.History))
			}
		})
	}
	if _, err := core.Undo(ctx, newStore(t), webKey, 0); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("undo of a missing deployment: %v", err)
	}
}
