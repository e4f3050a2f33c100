// Command faulty is the deliberately broken network plugin the network
// conformance suite's own tests run against; see package faulty.
package main

import "github.com/paddock-dev/paddock/conformance/networktest/faulty"

func main() { faulty.Main() }
