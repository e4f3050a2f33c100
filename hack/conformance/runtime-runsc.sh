#!/usr/bin/env bash
# runtime-runsc.sh REPORT_DIR runs the runtime conformance suite, sandboxed
# profile, against the gVisor plugin (bin/paddock-runtime-runsc with
# bin/runsc). make conformance calls it.
#
# OPEN lists the cases the plugin does not pass reliably yet (see issue 6): they are
# left out of this run and named, so that the rest guards against
# regressions. Empty it when they pass.
set -euo pipefail
report=${1:?usage: runtime-runsc.sh REPORT_DIR}
OPEN="RT-CT-010 RT-EX-004 RT-ID-003"
focus=$(bin/paddock conformance runtime --list | awk -v open=" $OPEN " 'index(open, " " $1 " ") == 0 { printf "%s%s", sep, $1; sep = "|" }')
echo "runtime-runsc.sh: not yet passing, left out: $OPEN"
bin/paddock conformance runtime --plugin bin/paddock-runtime-runsc --profile sandboxed \
	--focus "^($focus)\$" --report-dir "$report"
