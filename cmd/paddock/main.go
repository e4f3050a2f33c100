// Command paddock is Paddock's single binary: the control plane server, the
// all-in-one cluster, the command-line client and the conformance runner.
package main

import (
	"os"

	conformance "github.com/paddock-dev/paddock/conformance/cli"
	"github.com/paddock-dev/paddock/core/cli"
)

func main() { os.Exit(cli.Main(conformance.New)) }
