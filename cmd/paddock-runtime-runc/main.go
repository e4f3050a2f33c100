// Command paddock-runtime-runc is Paddock's runc runtime plugin. The node
// agent starts it through go-plugin; the plugin starts paddock-runc-shim
// (installed next to it) for every container it runs, or, when that is
// missing, the same binary as "paddock-runtime-runc shim DIR".
package main

import (
	"os"

	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/runc"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	if runc.IsShim(os.Args) {
		os.Exit(runc.RunShim(os.Args[2:]))
	}
	runtimev1.Serve(runc.New(runc.Options{Version: version}))
}
