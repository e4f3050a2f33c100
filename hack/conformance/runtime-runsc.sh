#!/usr/bin/env bash
# runtime-runsc.sh REPORT_DIR runs the runtime conformance suite, sandboxed
# profile, against the gVisor plugin (bin/paddock-runtime-runsc with
# bin/runsc). make conformance calls it.
set -euo pipefail
report=${1:?usage: runtime-runsc.sh REPORT_DIR}
bin/paddock conformance runtime --plugin bin/paddock-runtime-runsc --profile sandboxed --report-dir "$report"
