package ociruntime

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/paddock-dev/paddock/core/errdefs"
	"golang.org/x/sys/unix"
)

// parseSignal reads a signal as a name (SIGUSR1, USR1, usr1), a real-time
// signal (SIGRTMIN+3) or a number (10). An empty string is def. Anything
// else is ErrInvalidArgument naming field.
func parseSignal(field, s string, def unix.Signal) (unix.Signal, error) {
	if s == "" {
		return def, nil
	}
	bad := func() (unix.Signal, error) {
		return 0, errdefs.Field(errdefs.ErrInvalidArgument, field, fmt.Sprintf("%q is not a signal (a name like SIGTERM or USR1, or a number 1-64)", s))
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 64 {
			return bad()
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if rest, ok := strings.CutPrefix(name, "SIGRTMIN"); ok {
		return rtSignal(rest, 34, 1, bad)
	}
	if rest, ok := strings.CutPrefix(name, "SIGRTMAX"); ok {
		return rtSignal(rest, 64, -1, bad)
	}
	sig := unix.SignalNum(name)
	if sig == 0 {
		return bad()
	}
	return sig, nil
}

// rtSignal reads the "+N" / "-N" after SIGRTMIN (base 34, direction +1) or
// SIGRTMAX (64, -1).
func rtSignal(rest string, base, dir int, bad func() (unix.Signal, error)) (unix.Signal, error) {
	if rest == "" {
		return unix.Signal(base), nil
	}
	sign := 1
	switch rest[0] {
	case '+':
	case '-':
		sign = -1
	default:
		return bad()
	}
	n, err := strconv.Atoi(rest[1:])
	if err != nil || sign != dir || n < 0 || n > 30 {
		return bad()
	}
	return unix.Signal(base + sign*n), nil
}
