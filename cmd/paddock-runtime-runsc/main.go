// Command paddock-runtime-runsc is Paddock's gVisor runtime plugin. The
// node agent starts it through go-plugin; it drives runsc (by default the
// one installed next to it) and starts paddock-runc-shim (installed next
// to it) for every container, or, when that is missing, the same binary
// as "paddock-runtime-runsc shim DIR".
package main

import (
	"os"

	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/runsc"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	if runsc.IsShim(os.Args) {
		os.Exit(runsc.RunShim(os.Args[2:]))
	}
	runtimev1.Serve(runsc.New(runsc.Options{Version: version}))
}
