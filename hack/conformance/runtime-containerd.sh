#!/usr/bin/env bash
# runtime-containerd.sh REPORT_DIR runs the runtime conformance suite
# against the containerd plugin (bin/paddock-runtime-containerd) on a
# containerd daemon of its own: its own config (the CRI plugin disabled, so
# nothing reaches out to registries), root, state directory and socket,
# removed afterwards. make conformance calls it.
#
# It runs the suite twice: with the runc shim (report in REPORT_DIR), and,
# sandboxed profile, with gVisor's shim (bin/containerd-shim-runsc-v1,
# found through the daemon's PATH, running bin/runsc) as the plugin's
# default handler (report in REPORT_DIR-gvisor).
set -euo pipefail
report=${1:?usage: runtime-containerd.sh REPORT_DIR}
dir=$(mktemp -d /tmp/paddock-ctrd-XXXXXX)
cat >"$dir/config.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
TOML
PATH="$PWD/bin:$PATH" containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 300); do
	[[ -S "$dir/containerd.sock" ]] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
if [[ ! -S "$dir/containerd.sock" ]]; then
	echo "runtime-containerd.sh: containerd did not start; its log:" >&2
	tail -20 "$dir/containerd.log" >&2
	exit 1
fi
printf '{"address":"%s"}\n' "$dir/containerd.sock" >"$dir/plugin.json"
bin/paddock conformance runtime --plugin bin/paddock-runtime-containerd \
	--plugin-config "$dir/plugin.json" --report-dir "$report"

printf '{"address":"%s","runtimes":{"runc":"io.containerd.runc.v2","runsc":"io.containerd.runsc.v1"},"defaultHandler":"runsc","runscPath":"%s"}\n' \
	"$dir/containerd.sock" "$PWD/bin/runsc" >"$dir/plugin-gvisor.json"
bin/paddock conformance runtime --plugin bin/paddock-runtime-containerd --profile sandboxed \
	--plugin-config "$dir/plugin-gvisor.json" --report-dir "$report-gvisor"
