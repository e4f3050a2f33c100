// Command paddock-runtime-containerd is Paddock's containerd runtime
// plugin. The node agent starts it through go-plugin; containerd's shims
// start the same binary as "paddock-runtime-containerd
// paddock-container-log DIR" to write a container's output to its log.
package main

import (
	"os"

	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/containerd"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	if containerd.IsLogger(os.Args) {
		os.Exit(containerd.RunLogger(os.Args))
	}
	runtimev1.Serve(containerd.New(containerd.Options{Version: version}))
}
