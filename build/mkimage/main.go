// Command mkimage builds the demo image, a static busybox in one layer, as
// an OCI archive that `ctr images import` and `edgectl image import` read.
// No registry and no Docker engine are needed. With --platform (repeated)
// it builds a multi-arch image instead: an OCI index with one manifest per
// architecture, each with that architecture's busybox.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/spf13/pflag"

	"github.com/edgeorch/edge/images"
)

func main() {
	fs := pflag.NewFlagSet("mkimage", pflag.ContinueOnError)
	name := fs.String("name", "edge.local/demo:latest", "image name")
	busybox := fs.String("busybox", "/bin/busybox", "static busybox binary to put in the image")
	arch := fs.String("arch", runtime.GOARCH, "image architecture (amd64, arm64, arm)")
	plats := fs.StringArray("platform", nil, "ARCH=BUSYBOX: add a platform to a multi-arch image (e.g. amd64=/bin/busybox arm64=build/.cache/arm64/busybox); replaces --arch and --busybox")
	out := fs.StringP("output", "o", "demo-image.tar", "archive to write")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if err := run(*name, *busybox, *arch, *plats, *out); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(name, busybox, arch string, plats []string, out string) error {
	var specs []*images.ImageSpec
	if len(plats) == 0 {
		plats = []string{arch + "=" + busybox}
	}
	for _, p := range plats {
		a, bb, ok := strings.Cut(p, "=")
		if !ok || a == "" || bb == "" {
			return fmt.Errorf("--platform %q: want ARCH=BUSYBOX", p)
		}
		spec, err := images.BusyboxImage(name, bb, a)
		if err != nil {
			return err
		}
		specs = append(specs, spec)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	if len(specs) == 1 {
		err = images.WriteOCIArchive(w, specs[0])
	} else {
		err = images.WriteOCIIndexArchive(w, name, specs...)
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
