// Package version holds the build's version, set with
// -ldflags "-X github.com/edgeorch/edge/internal/version.Version=v1.2.3".
package version

// Version of this build.
var Version = "v0.1.0-dev"
