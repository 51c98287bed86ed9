// Command edge-logdriver writes one container's output to its rotated log
// files. containerd's shim runs it for each task the agent starts (a
// binary:// log URI); nobody runs it by hand. It is a separate binary,
// beside edgeagent, only to be small: one runs per container.
package main

import (
	"os"

	"github.com/edgeorch/edge/internal/logrotate"
)

func main() { os.Exit(logrotate.RunDriver(os.Args[1:])) }
