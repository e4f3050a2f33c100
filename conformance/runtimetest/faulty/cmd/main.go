// Command faulty is the deliberately broken runtime plugin the conformance
// suite's own tests run against; see package faulty.
package main

import "github.com/paddock-dev/paddock/conformance/runtimetest/faulty"

func main() { faulty.Main() }
