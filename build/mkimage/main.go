// Command mkimage builds the demo image, a static busybox in one layer, as
// an OCI archive that `ctr images import` and `edgectl image import` read.
// No registry and no Docker engine are needed.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"

	"github.com/spf13/pflag"

	"github.com/edgeorch/edge/images"
)

func main() {
	fs := pflag.NewFlagSet("mkimage", pflag.ContinueOnError)
	name := fs.String("name", "edge.local/demo:latest", "image name")
	busybox := fs.String("busybox", "/bin/busybox", "static busybox binary to put in the image")
	arch := fs.String("arch", runtime.GOARCH, "image architecture (amd64, arm64, arm)")
	out := fs.StringP("output", "o", "demo-image.tar", "archive to write")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if err := run(*name, *busybox, *arch, *out); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(name, busybox, arch, out string) error {
	spec, err := images.BusyboxImage(name, busybox, arch)
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	if err := images.WriteOCIArchive(w, spec); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
