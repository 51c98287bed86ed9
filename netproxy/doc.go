// Package netproxy is the node's service proxy, in the style of kube-proxy's
// iptables mode, plus the host-gw routes that carry pod traffic between
// nodes.
//
// Proxy.Sync turns a core.NetworkState into iptables rules: cluster IPs,
// NodePorts and LoadBalancer ports (opened on the node's own address, as
// k3s' ServiceLB does) are DNATed to ready endpoints chosen at random, with
// optional ClientIP affinity and externalTrafficPolicy Local; ports without
// endpoints are rejected so that clients fail fast; pods are masqueraded
// when they leave the cluster CIDR but keep their address between pods.
// Every update is one `iptables-restore --noflush` transaction per table
// that rewrites only our chains (only the changed ones between periodic
// full resyncs), so a live service is never without rules, and a restarted
// agent takes over its previous rules without a gap; the two tables are
// written in an order that never leaves a port both without its DNAT and
// without its REJECT (bridgeRejects), and every CheckPeriod one iptables
// call checks that a firewall reload did not drop our jump. UDP and SCTP flows
// pinned by conntrack to an endpoint that went away are flushed. Sync sets
// net.ipv4.ip_forward and net.bridge.bridge-nf-call-iptables.
// Proxy.SyncRoutes installs `podCIDR via nodeIP` (host-gw) for every other
// node. Cleanup removes all of it but the sysctls.
//
// What it must never do: touch a chain, rule or route it did not make. Our
// chains are named EDGE-* (the fixed names, or a kind and 16 base32
// characters: see isOurChain), our jump rules carry an "edge ..." comment, our
// routes carry RouteProtocol; everything else on the host is left as found,
// so the package coexists with Docker, firewalld or a hand-written ruleset.
// It speaks IPv4 only.
//
// Tables and chains (see render.go for the rules themselves):
//
//	nat    PREROUTING, OUTPUT -> EDGE-SERVICES -> EDGE-SVC-*, EDGE-EXT-*, EDGE-NODEPORTS
//	       EDGE-SVC-* / EDGE-SVL-* (local endpoints) -> EDGE-SEP-* (one per endpoint: DNAT)
//	       POSTROUTING -> EDGE-POSTROUTING (masquerade marked traffic and pod egress)
//	filter INPUT, OUTPUT -> EDGE-SERVICES (REJECT/DROP ports without endpoints)
//	       FORWARD -> EDGE-FORWARD (-> EDGE-SERVICES; accept pod and service traffic)
package netproxy
