// Command paddock-net-bridge is Paddock's bridge network plugin (package
// netplugins/bridge), the default network of `paddock up`. The node agent
// starts it through go-plugin.
package main

import (
	"github.com/paddock-dev/paddock/netplugins/bridge"
	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	networkv1.Serve(bridge.New(bridge.Options{Version: version}))
}
