// Command paddock-runc-shim is the container shim of Paddock's runc
// runtime plugin (runtimes/runc/shim): the plugin runs it as
// "paddock-runc-shim DIR" for every container it starts, from the
// directory of its own binary unless its configuration names another
// (shimPath). It is kept small, apart from the plugin's binary, so that
// it starts quickly.
package main

import (
	"os"

	"github.com/paddock-dev/paddock/runtimes/runc/shim"
)

func main() {
	os.Exit(shim.Run(os.Args[1:]))
}
