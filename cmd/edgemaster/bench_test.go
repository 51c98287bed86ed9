package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgeorch/edge/images/regtest"
)

// BenchmarkRegistryBlob: one blob (EDGE_BENCH_BLOB_MB, default 128 MiB)
// served by the master's /v2/ over HTTPS on loopback with the admin token,
// against reading the same stored file in the same run: through the page
// cache (what the server reads too) and with O_DIRECT (the disk itself).
// Reported: MB/s of each and the ratios.
func BenchmarkRegistryBlob(b *testing.B) {
	mb := 128
	if v, err := strconv.Atoi(os.Getenv("EDGE_BENCH_BLOB_MB")); err == nil && v > 0 {
		mb = v
	}
	size := int64(mb) << 20
	up := regtest.Start(b, regtest.Options{})
	img := up.PushRandom(b, "bench/blob", "v1", size, 7)
	r := runRegistryMaster(b, up)
	layer := img.Blobs[1].Digest
	url := "https://" + r.addr + "/v2/docker.io/bench/blob/blobs/" + layer.String()
	pull := func() int64 {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+r.token)
		resp, err := r.client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || resp.StatusCode != 200 || n != size {
			b.Fatalf("GET blob: %s %d bytes %v", resp.Status, n, err)
		}
		return n
	}
	pull() // pulled through once; from here on it is served from the store
	path := r.m.Content.BlobPath(layer)

	rate := func(f func()) float64 {
		const rounds = 3
		start := time.Now()
		for range rounds {
			f()
		}
		return float64(size*rounds) / time.Since(start).Seconds() / 1e6
	}
	cached := rate(func() { readFile(b, path, false) })
	direct := rate(func() { readFile(b, path, true) })

	b.SetBytes(size)
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		pull()
	}
	served := float64(size*int64(b.N)) / time.Since(start).Seconds() / 1e6
	b.ReportMetric(served, "served-MB/s")
	b.ReportMetric(cached, "pagecache-MB/s")
	b.ReportMetric(served/cached, "ratio-pagecache")
	if direct > 0 {
		b.ReportMetric(direct, "disk-MB/s")
		b.ReportMetric(served/direct, "ratio-disk")
	}
	if n := up.BlobGets(layer); n != 1 {
		b.Fatalf("upstream served the blob %d times", n)
	}
	fmt.Fprintf(os.Stderr, "blob %d MiB: /v2/ over HTTPS %.0f MB/s, page cache %.0f MB/s, O_DIRECT disk %.0f MB/s\n", mb, served, cached, direct)
}

// readFile reads path to the end, with O_DIRECT (aligned buffer) if
// direct; it returns quietly if the file system refuses O_DIRECT.
func readFile(b *testing.B, path string, direct bool) {
	flags := os.O_RDONLY
	if direct {
		flags |= unix.O_DIRECT
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		if direct {
			return
		}
		b.Fatal(err)
	}
	defer f.Close()
	// Anonymous memory is page aligned, as O_DIRECT wants.
	buf, err := unix.Mmap(-1, 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Munmap(buf)
	for {
		_, err := f.Read(buf)
		if err == io.EOF {
			return
		} else if err != nil {
			if direct {
				return
			}
			b.Fatal(err)
		}
	}
}
