package core_test

import (
	"strings"
	"testing"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/core/coretest"
)

// withIP reports a pod running with an address from its node's subnet,
// ready unless notReady names it.
func withIP(c *coretest.Cluster, notReady map[string]bool) func(*core.Pod) *core.PodStatus {
	n := 0
	return func(p *core.Pod) *core.PodStatus {
		st := coretest.Running(p)
		n++
		node := c.Node(p.Spec.NodeName)
		st.PodIP = strings.TrimSuffix(node.Spec.PodCIDR, "0/24") + string(rune('0'+n))
		if notReady[p.Metadata.Name] || notReady[p.Spec.NodeName] {
			st.ContainerStatuses[0].Ready = false
		}
		return st
	}
}

func endpoints(c *coretest.Cluster, name string) *core.Endpoints {
	o, err := c.Store.Get(ctx, core.Key{Kind: core.KindEndpoints, Namespace: "default", Name: name})
	if core.ErrorCode(err) == core.ENOTFOUND {
		return nil
	} else if err != nil {
		c.T.Fatal(err)
	}
	return o.(*core.Endpoints)
}

func TestControllers_PodCIDRs(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.AddNode("n2", nil, "4", "4Gi")
	c.Sync()
	if a, b := c.Node("n1").Spec.PodCIDR, c.Node("n2").Spec.PodCIDR; a != "10.42.0.0/24" || b != "10.42.1.0/24" {
		t.Fatalf("pod subnets %q %q", a, b)
	}
	if ds := c.Bus.Desired("n2"); ds == nil || ds.PodCIDR != "10.42.1.0/24" {
		t.Fatalf("desired state of n2 carries pod subnet %+v", ds)
	}
	// Deleting a node frees its subnet; the others keep theirs.
	c.Delete(core.Key{Kind: core.KindNode, Name: "n1"})
	c.AddNode("n3", nil, "4", "4Gi")
	c.Sync()
	if a, b := c.Node("n2").Spec.PodCIDR, c.Node("n3").Spec.PodCIDR; a != "10.42.1.0/24" || b != "10.42.0.0/24" {
		t.Fatalf("after n1 left: n2 %q, n3 %q", a, b)
	}
}

// A full cluster CIDR leaves a new node without a subnet, and the
// scheduler says why instead of placing pods it could not address.
func TestControllers_PodCIDRsExhausted(t *testing.T) {
	c := newCluster(t)
	var err error
	if c.Ctl.Network, err = core.ParseNetworkConfig("10.42.0.0/24", 25, "10.43.0.0/16"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		c.AddNode(n, map[string]string{"only": n}, "4", "4Gi")
	}
	c.Sync()
	if cidr := c.Node("n3").Spec.PodCIDR; cidr != "" {
		t.Fatalf("n3 got %q from a full cluster CIDR", cidr)
	}
	c.Apply(strings.Replace(deployment("web", 1, ""), "    spec:\n", "    spec:\n      nodeSelector: {only: n3}\n", 1))
	c.Sync()
	p := c.Pods()[0]
	if cond := p.Status.Condition("PodScheduled"); p.Spec.NodeName != "" || cond == nil || !strings.Contains(cond.Message, "no pod subnet") {
		t.Fatalf("pod on %q, condition %+v", p.Spec.NodeName, cond)
	}
}

func TestControllers_Endpoints(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.AddNode("n2", nil, "4", "4Gi")
	c.Apply(deployment("web", 3, ""))
	c.Apply("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  type: LoadBalancer\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n")
	c.Sync()
	notReady := map[string]bool{}
	c.AgentWith("n1", withIP(c, notReady))
	c.AgentWith("n2", withIP(c, notReady))
	c.Sync()
	e := endpoints(c, "web")
	if e == nil || len(e.Subsets) != 1 || len(e.Subsets[0].Addresses) != 3 || e.Subsets[0].Ports[0].Port != 8080 {
		t.Fatalf("endpoints %+v", e)
	}
	if e.Metadata.Labels[core.LabelManagedBy] == "" || e.Subsets[0].Addresses[0].TargetRef == nil || e.Subsets[0].Addresses[0].NodeName == "" {
		t.Fatalf("endpoint address lacks its pod or node: %+v", e.Subsets[0].Addresses[0])
	}
	ns, pubs := c.Bus.Network()
	if ns == nil || len(ns.Services) != 1 || len(ns.Services[0].Endpoints) != 3 || len(ns.Nodes) != 2 {
		t.Fatalf("network state %+v", ns)
	}
	if sp := ns.Services[0]; sp.ClusterIP != "10.43.0.11" || sp.Ports[0].NodePort == 0 || sp.Endpoints[0].Ports[0] != 8080 || !sp.Endpoints[0].Ready {
		t.Fatalf("network service %+v", sp)
	}
	// Idle: no writes, no new network publication.
	writes := c.Writes()
	c.AgentWith("n1", withIP(c, notReady))
	c.Sync()
	c.Sync()
	if _, p := c.Bus.Network(); p != pubs || c.Writes() != writes {
		t.Fatalf("idle passes published %d network states and wrote %d times", p-pubs, c.Writes()-writes)
	}

	// A replica failing its readiness probe moves to notReadyAddresses.
	victim := c.Bus.Desired("n1").Pods[0].Metadata.Name
	notReady[victim] = true
	c.AgentWith("n1", withIP(c, notReady))
	c.Sync()
	e = endpoints(c, "web")
	if len(e.Subsets[0].Addresses) != 2 || len(e.Subsets[0].NotReadyAddresses) != 1 || e.Subsets[0].NotReadyAddresses[0].TargetRef.Name != victim {
		t.Fatalf("after %s failed readiness: %+v", victim, e.Subsets)
	}
	if ns, _ := c.Bus.Network(); readyCount(ns.Services[0]) != 2 {
		t.Fatalf("network state still routes to the unready pod: %+v", ns.Services[0].Endpoints)
	}

	// The LoadBalancer lists the ready nodes' addresses.
	svc := c.Get(core.Key{Kind: core.KindService, Namespace: "default", Name: "web"}).(*core.Service)
	if len(svc.Status.LoadBalancer.Ingress) != 2 {
		t.Fatalf("ingress %+v (nodes report addresses)", svc.Status.LoadBalancer.Ingress)
	}

	// No longer a LoadBalancer: no stale ingress.
	c.Apply("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n")
	c.Sync()
	if svc := c.Get(core.Key{Kind: core.KindService, Namespace: "default", Name: "web"}).(*core.Service); len(svc.Status.LoadBalancer.Ingress) != 0 {
		t.Fatalf("a NodePort service keeps ingress %+v", svc.Status.LoadBalancer.Ingress)
	}

	// Scale down: the removed pods leave once terminating.
	c.Apply(deployment("web", 1, ""))
	c.Sync()
	e = endpoints(c, "web")
	total := 0
	for _, s := range e.Subsets {
		total += len(s.Addresses) + len(s.NotReadyAddresses)
	}
	if total != 1 {
		t.Fatalf("after scaling to 1: %+v", e.Subsets)
	}

	// Deleting the service deletes its endpoints and its network entry.
	c.Delete(core.Key{Kind: core.KindService, Namespace: "default", Name: "web"})
	c.Sync()
	if endpoints(c, "web") != nil {
		t.Fatal("endpoints outlived their service")
	}
	if ns, _ := c.Bus.Network(); len(ns.Services) != 0 {
		t.Fatalf("network state still has %+v", ns.Services)
	}
}

func readyCount(s core.NetService) int {
	n := 0
	for _, e := range s.Endpoints {
		if e.Ready {
			n++
		}
	}
	return n
}

// A named target port resolves through each pod's container ports; pods
// that call it differently land in different subsets.
func TestEndpointsFor_NamedPorts(t *testing.T) {
	svc := &core.Service{Metadata: core.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: core.ServiceSpec{Selector: map[string]string{"app": "web"},
			Ports: []core.ServicePort{{Name: "http", Port: 80, Protocol: "TCP", TargetPort: core.IntOrStr("web")}}}}
	pod := func(name, ip string, port int32, ready bool) *core.Pod {
		p := &core.Pod{Metadata: core.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "web"}},
			Spec: core.PodSpec{NodeName: "n1", Containers: []core.Container{{Name: "c"}}},
			Status: core.PodStatus{Phase: core.PodRunning, PodIP: ip,
				ContainerStatuses: []core.ContainerStatus{{Name: "c", Ready: ready}}}}
		if port != 0 {
			p.Spec.Containers[0].Ports = []core.ContainerPort{{Name: "web", ContainerPort: port, Protocol: "TCP"}}
		}
		return p
	}
	e := core.EndpointsFor(svc, []*core.Pod{pod("a", "10.42.0.2", 8080, true), pod("b", "10.42.0.3", 9090, true),
		pod("c", "10.42.0.4", 8080, false), pod("noport", "10.42.0.5", 0, true)})
	if len(e.Subsets) != 2 {
		t.Fatalf("subsets %+v", e.Subsets)
	}
	got := map[int32]string{}
	for _, s := range e.Subsets {
		for _, a := range s.Addresses {
			got[s.Ports[0].Port] += a.IP + " "
		}
		for _, a := range s.NotReadyAddresses {
			got[s.Ports[0].Port] += "!" + a.IP + " "
		}
	}
	if got[8080] != "10.42.0.2 !10.42.0.4 " || got[9090] != "10.42.0.3 " {
		t.Fatalf("resolved ports %v", got)
	}
	ns := core.BuildNetworkState(core.NetworkConfig{}, nil, []*core.Service{svc}, []*core.Endpoints{e})
	if eps := ns.Services[0].Endpoints; len(eps) != 3 || eps[1].Ports[0] != 9090 || eps[2].Ready {
		t.Fatalf("network endpoints %+v", eps)
	}
}

// A node's own view of its pods overrides the published readiness, except
// for a service that publishes pods before they are ready.
func TestNetService_Serving(t *testing.T) {
	notReady := func(string) (bool, bool) { return false, true }
	unknown := func(string) (bool, bool) { return false, false }
	e := core.NetEndpoint{IP: "10.42.0.2", PodUID: "u", Ready: true}
	s := core.NetService{}
	if s.Serving(&e, notReady) || !s.Serving(&e, unknown) || !s.Serving(&e, nil) {
		t.Fatal("local readiness does not override the published one")
	}
	s.PublishNotReady = true
	if !s.Serving(&e, notReady) {
		t.Fatal("publishNotReadyAddresses: a not-ready local pod left the endpoints")
	}
}

// A node's desired state carries the ConfigMaps and Secrets its own pods
// use, and no others; changing one republishes it.
func TestPublish_ConfigForItsPodsOnly(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", map[string]string{"only": "n1"}, "4", "4Gi")
	c.AddNode("n2", map[string]string{"only": "n2"}, "4", "4Gi")
	c.Apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: conf}\ndata: {a: \"1\"}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData: {p: x1}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: other}\nstringData: {p: y1}\n")
	c.Apply(strings.Replace(strings.Replace(deployment("web", 1, ""), "    spec:\n", "    spec:\n      nodeSelector: {only: n1}\n", 1),
		"        image:", "        envFrom: [{configMapRef: {name: conf}}, {secretRef: {name: creds}}]\n        image:", 1))
	c.Sync()
	ds1, ds2 := c.Bus.Desired("n1"), c.Bus.Desired("n2")
	if len(ds1.ConfigMaps) != 1 || len(ds1.Secrets) != 1 || ds1.Secrets[0].Metadata.Name != "creds" || string(ds1.Secrets[0].Data["p"]) != "x1" {
		t.Fatalf("n1 got config maps %v, secrets %v", ds1.ConfigMaps, ds1.Secrets)
	}
	if ds2 != nil && (len(ds2.ConfigMaps) > 0 || len(ds2.Secrets) > 0) {
		t.Fatalf("n2 runs no pod using them but got %v %v", ds2.ConfigMaps, ds2.Secrets)
	}
	before := c.Bus.Published("n1")
	c.Apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: conf}\ndata: {a: \"2\"}\n")
	c.Sync()
	if ds := c.Bus.Desired("n1"); c.Bus.Published("n1") != before+1 || ds.ConfigMaps[0].Data["a"] != "2" {
		t.Fatalf("a changed ConfigMap was not republished: %v", ds.ConfigMaps)
	}
	c.Apply("apiVersion: v1\nkind: Secret\nmetadata: {name: other}\nstringData: {p: z1}\n")
	c.Sync()
	if c.Bus.Published("n1") != before+1 {
		t.Fatal("a secret no pod of n1 uses republished n1")
	}
}

// A template's nodeName pins every pod to that node (the KubeEdge idiom).
func TestControllers_TemplateNodeName(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.AddNode("n2", nil, "4", "4Gi")
	c.Apply(strings.Replace(deployment("mapper", 3, ""), "    spec:\n", "    spec:\n      nodeName: n2\n", 1))
	c.Sync()
	if m := c.Placement(); m["n2"] != 3 || m["n1"] != 0 {
		t.Fatalf("placement %v, want all 3 on n2", m)
	}
}

// ConfigRefs names each object once, and costs nothing for a pod that
// uses none (it runs for every pod on every pass).
func TestConfigRefs(t *testing.T) {
	spec := &core.PodSpec{
		Volumes: []core.Volume{{Name: "a", ConfigMap: &core.ConfigMapVolumeSource{Name: "conf"}}, {Name: "b", Secret: &core.SecretVolumeSource{SecretName: "s"}}},
		Containers: []core.Container{{Name: "c", EnvFrom: []core.EnvFromSource{{ConfigMapRef: &core.NameOptional{Name: "conf"}}, {ConfigMapRef: &core.NameOptional{Name: "other"}}},
			Env: []core.EnvVar{{Name: "X", ValueFrom: &core.EnvVarSource{SecretKeyRef: &core.KeySelector{Name: "s", Key: "k"}}}}}}}
	cms, secs := spec.ConfigRefs()
	if strings.Join(cms, ",") != "conf,other" || strings.Join(secs, ",") != "s" {
		t.Fatalf("refs %v %v", cms, secs)
	}
	plain := &core.PodSpec{Containers: []core.Container{{Name: "c", Env: []core.EnvVar{{Name: "A", Value: "1"}}}}}
	if n := testing.AllocsPerRun(100, func() { plain.ConfigRefs() }); n != 0 {
		t.Fatalf("%v allocations for a pod without ConfigMaps or Secrets", n)
	}
}
