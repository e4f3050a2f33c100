// Command paddock is Paddock's single binary: the control plane server, the
// all-in-one cluster, and the command-line client.
package main

import (
	"os"

	"github.com/paddock-dev/paddock/core/cli"
)

func main() { os.Exit(cli.Main()) }
