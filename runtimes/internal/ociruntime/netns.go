package ociruntime

// A sandbox whose config names no network namespace gets one of its own
// (internal/netns), kept alive by a bind mount at sandboxes/ID/netns, so
// that its containers share one loopback as a pod's do. It has only a
// loopback interface (up) and is removed with the sandbox.
