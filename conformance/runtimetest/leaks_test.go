package runtimetest

import (
	"slices"
	"testing"
)

// The leak check blames the runtime for what came from its tree — the
// plugin's descendants and orphans re-parented to init — and not for what
// other programs on the machine start meanwhile.
func TestLeaksAttribution(t *testing.T) {
	const plugin = 150
	before := &state{
		procs:    map[int]string{1: "init", 100: "bash", plugin: "plugin"},
		parents:  map[int]int{1: 0, 100: 1, plugin: 100},
		sessions: map[int]int{1: 0, 100: 100, plugin: 100},
	}
	after := &state{
		procs:    map[int]string{1: "init", 100: "bash", plugin: "plugin", 200: "shim child", 201: "orphaned shim", 202: "service of init", 203: "shell's job", 204: "container", 205: "service's shell"},
		parents:  map[int]int{1: 0, 100: 1, plugin: 100, 200: plugin, 201: 1, 202: 1, 203: 100, 204: 201, 205: 202},
		sessions: map[int]int{1: 0, 100: 100, plugin: 100, 200: 100, 201: 201, 202: 0, 203: 100, 204: 201, 205: 205},
	}
	got := leaks(before, after, plugin)
	want := []string{"process 200: shim child", "process 201: orphaned shim", "process 204: container"}
	if !slices.Equal(got, want) {
		t.Errorf("leaks = %q, want %q", got, want)
	}
}
