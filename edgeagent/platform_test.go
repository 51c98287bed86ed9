package edgeagent

import (
	"runtime"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The platform a node pulls of a multi-arch image is the agent binary's:
// amd64 on amd64, arm64 on arm64, arm/v7 for the armv7 build (GOARM=7
// runs on v7 and later CPUs; a Pi 4 on a 32-bit OS reports v8 and takes
// v7 all the same). make test-arm64 runs this as arm64 and arm under
// qemu-user, where the variant comes from uname (aarch64, armv7l).
func TestPullPlatform(t *testing.T) {
	index := []ocispec.Platform{
		{OS: "linux", Architecture: "amd64"},
		{OS: "linux", Architecture: "arm", Variant: "v6"},
		{OS: "linux", Architecture: "arm", Variant: "v7"},
		{OS: "linux", Architecture: "arm64", Variant: "v8"},
		{OS: "linux", Architecture: "ppc64le"},
		{OS: "windows", Architecture: runtime.GOARCH},
	}
	m := pullPlatform()
	var best *ocispec.Platform
	for i := range index {
		if m.Match(index[i]) && (best == nil || m.Less(index[i], *best)) {
			best = &index[i]
		}
	}
	want := ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
	switch runtime.GOARCH {
	case "arm":
		want.Variant = "v7"
	case "arm64":
		want.Variant = "v8"
	}
	if best == nil || best.OS != want.OS || best.Architecture != want.Architecture || best.Variant != want.Variant {
		t.Fatalf("%s agent picks %+v of a multi-arch image; want %+v", runtime.GOARCH, best, want)
	}
	// An image of another architecture only is not pulled.
	if m.Match(ocispec.Platform{OS: "linux", Architecture: "ppc64le"}) {
		t.Fatal("ppc64le matches")
	}
}
