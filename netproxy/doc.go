// Package netproxy will program the service proxy on each node with iptables
// (coreos/go-iptables): ClusterIP and NodePort to endpoints, atomic rule
// updates and clean removal, like kube-proxy's iptables mode.
//
// Not built yet: Services are stored and get a ClusterIP from 10.43.0.0/16,
// but nothing routes it; `edgectl describe service` says so. The networking
// issue builds this package.
package netproxy
