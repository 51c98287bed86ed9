package core

import "strings"

// NormalizeImage expands a short image reference the way Docker and
// containerd do: "busybox" -> "docker.io/library/busybox:latest".
func NormalizeImage(ref string) string {
	name, digest, hasDigest := strings.Cut(ref, "@")
	domain, rest := "", name
	if i := strings.IndexByte(name, '/'); i >= 0 {
		first := name[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" {
			domain, rest = first, name[i+1:]
		}
	}
	if domain == "" {
		domain = "docker.io"
		if !strings.Contains(rest, "/") {
			rest = "library/" + rest
		}
	}
	// A tag follows the last colon after the last slash.
	lastSlash := strings.LastIndexByte(rest, '/')
	if !strings.Contains(rest[lastSlash+1:], ":") && !hasDigest {
		rest += ":latest"
	}
	out := domain + "/" + rest
	if hasDigest {
		out += "@" + digest
	}
	return out
}
