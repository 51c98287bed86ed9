package main

// CronJob time zones (spec.timeZone) are checked when manifests are
// decoded, here too: they must resolve on a machine without
// /usr/share/zoneinfo (minimal Pi images). The zone database is built in
// (about 450 KB), as in kube-controller-manager; time.LoadLocation still
// prefers the system's, which is kept up to date.
import _ "time/tzdata"
