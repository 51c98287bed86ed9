// Package clusterdns is the DNS server each node's agent runs for its pods.
//
// It listens on the node's pod bridge address (10.42.3.1:53, UDP and TCP),
// the gateway every pod on the node already routes through. Pods therefore
// reach it without crossing the network and without kube-proxy style
// virtual IPs, and a node that loses the master or its neighbours still
// answers its own pods. The bridge address differs per node, so each pod's
// resolv.conf names its own node (see ResolvConf).
//
// Cluster names (NAME.NS.svc.DOMAIN, HOST.NAME.NS.svc.DOMAIN, SRV for named
// ports, PTR for service IPs) are answered from the agent's local copy of
// the cluster's network state, the same core.NetworkState the proxy routes
// by, which the agent keeps on disk: names keep resolving while the master
// is down, and they agree with the routes the node actually installed. The
// agent also knows its own pods' readiness before the master does, so
// Update lets it override that for local endpoints.
//
// Every other name is forwarded to the node's own resolvers. The agent runs
// in the host's network namespace, so a host stub such as systemd-resolved
// on 127.0.0.53, which a pod could never reach, works as an upstream.
//
// Answers carry a 5 s TTL, and negative answers an SOA with a 5 s minimum:
// endpoints come and go with pods, answering is a map lookup on the same
// node, so short TTLs cost little and keep clients from holding stale
// addresses. Unknown names under the cluster domain are NXDOMAIN at once,
// authoritatively, because with ndots:5 pods try several search-path
// expansions (web.default.svc.default.svc.cluster.local) before the real
// name; names that exist without an address of the asked type (AAAA, or
// empty non-terminals like default.svc.cluster.local) are NOERROR with no
// answer, since NXDOMAIN would make glibc and musl stop searching.
//
// The package must never forward a cluster name (it would leak cluster
// topology and loop), never forward to its own listen address, and never
// let a flood of forwarded queries grow without bound: forwards are capped
// and excess ones answered SERVFAIL at once.
package clusterdns
