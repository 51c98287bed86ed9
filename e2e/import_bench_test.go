package e2e

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/edgeorch/edge/images"
)

// BenchmarkImageImport: one docker save tarball (EDGE_BENCH_IMPORT_MB,
// default 100 MB, of random and so incompressible content in one
// uncompressed layer) imported into a real master with the real
// `edgectl image import` (HTTPS on loopback, admin token; the master
// hashes every file, checks the layer's diff ID and moves the blobs into
// its store), against `ctr images import` of the same file into a real
// containerd (gRPC on a unix socket) in the same run: with --no-unpack
// (the same work: blobs verified and stored) and as ctr does by default
// (unpacked into a snapshot as well). Each round removes what it stored
// before the next (edgectl image rm and the master's collection; ctr
// images rm --sync), so every import writes everything. Reported: seconds
// of each and the ratios edgectl / ctr.
func BenchmarkImageImport(b *testing.B) {
	needRoot(b)
	if _, err := exec.LookPath("ctr"); err != nil {
		b.Skip("ctr is needed (apt-get install containerd)")
	}
	mb := 100
	if v, err := strconv.Atoi(os.Getenv("EDGE_BENCH_IMPORT_MB")); err == nil && v > 0 {
		mb = v
	}
	c := &cluster{t: b, root: b, dir: b.TempDir()}
	c.ctrd = startContainerd(b)
	c.startMaster()

	const ref = "edge.local/bench-import:1"
	payload := make([]byte, mb<<20)
	rand.Read(payload)
	spec := &images.ImageSpec{Name: ref, Architecture: runtime.GOARCH, Cmd: []string{"/payload"},
		Files: []images.File{{Path: "/payload", Mode: 0o644, Data: payload}}}
	tarball := filepath.Join(c.dir, "bench.tar")
	f, err := os.Create(tarball)
	if err != nil {
		b.Fatal(err)
	}
	if err := images.WriteDockerArchive(f, spec); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	payload = nil
	fi, _ := os.Stat(tarball)
	blobs := filepath.Join(c.dir, "master", "content", "blobs", "sha256")

	timed := func(name string, args ...string) time.Duration {
		start := time.Now()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			b.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return time.Since(start)
	}
	ctr := func(args ...string) []string { return append([]string{"-a", c.ctrd.socket, "-n", "edge"}, args...) }
	edgectl := filepath.Join(binDir, "edgectl")
	var ours, theirs, theirsUnpack time.Duration
	b.SetBytes(fi.Size())
	b.ResetTimer()
	for b.Loop() {
		// Interleaved, so that neither side has the machine to itself
		// more than the other.
		theirs += timed("ctr", ctr("images", "import", "--no-unpack", tarball)...)
		timed("ctr", ctr("images", "rm", "--sync", ref)...)
		ours += timed(edgectl, "--config", c.config, "image", "import", tarball)
		timed(edgectl, "--config", c.config, "image", "rm", ref)
		waitFor(b, time.Minute, "the master to free the imported blobs", func() error {
			if ents, err := os.ReadDir(blobs); err != nil || len(ents) > 0 {
				return fmt.Errorf("%d blobs left (%v)", len(ents), err)
			}
			return nil
		})
		theirsUnpack += timed("ctr", ctr("images", "import", tarball)...)
		timed("ctr", ctr("images", "rm", "--sync", ref)...)
	}
	n := float64(b.N)
	b.ReportMetric(ours.Seconds()/n, "edgectl-s")
	b.ReportMetric(theirs.Seconds()/n, "ctr-no-unpack-s")
	b.ReportMetric(theirsUnpack.Seconds()/n, "ctr-unpack-s")
	b.ReportMetric(ours.Seconds()/theirs.Seconds(), "ratio-no-unpack")
	b.ReportMetric(ours.Seconds()/theirsUnpack.Seconds(), "ratio-unpack")
	fmt.Fprintf(os.Stderr, "import of a %.0f MB docker save tarball: edgectl into the master %.2fs, ctr --no-unpack %.2fs (ratio %.2f), ctr with unpack %.2fs (ratio %.2f)\n",
		float64(fi.Size())/1e6, ours.Seconds()/n, theirs.Seconds()/n, ours.Seconds()/theirs.Seconds(), theirsUnpack.Seconds()/n, ours.Seconds()/theirsUnpack.Seconds())
}
