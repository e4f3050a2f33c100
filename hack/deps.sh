#!/usr/bin/env bash
# deps.sh installs what building and testing Paddock needs on a Debian
# machine, and checks the Go toolchain. It is idempotent: when everything is
# present it changes nothing and touches no network.
#
# Add a package to DEBIAN_PACKAGES when code or tests start to need it.
set -euo pipefail

# Debian packages the build and the tests need.
DEBIAN_PACKAGES="ca-certificates git make gcc protobuf-compiler busybox-static runc iproute2 nftables containerd"

# The oldest Go toolchain that builds the module (go.mod's go line).
GO_MIN_VERSION="1.26"

log() { echo "deps: $*"; }
die() { echo "deps: error: $*" >&2; exit 1; }

# --- Debian packages --------------------------------------------------------

missing=()
for pkg in $DEBIAN_PACKAGES; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
	if [[ "$status" != "installed" ]]; then
		missing+=("$pkg")
	fi
done

if ((${#missing[@]} == 0)); then
	log "debian packages present: $DEBIAN_PACKAGES"
else
	sudo=()
	if ((EUID != 0)); then
		command -v sudo >/dev/null 2>&1 ||
			die "missing packages ${missing[*]}; run this script as root (or install sudo) to install them"
		sudo=(sudo)
	fi
	log "installing missing debian packages: ${missing[*]}"
	# Debian starts the daemons it installs (containerd, with its CRI
	# plugin on); Paddock runs its own with its own configuration, so no
	# service is started during the install.
	policy=/usr/sbin/policy-rc.d
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
		"${sudo[@]}" chmod +x "$policy"
		trap '"${sudo[@]}" rm -f "$policy"' EXIT
	fi
	"${sudo[@]}" apt-get update
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y --no-install-recommends "${missing[@]}"
fi

# --- Go ---------------------------------------------------------------------

if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
	export PATH="/usr/local/go/bin:$PATH"
	log "added /usr/local/go/bin to PATH"
fi
command -v go >/dev/null 2>&1 ||
	die "go not found on PATH or in /usr/local/go/bin; install Go ${GO_MIN_VERSION} or newer from https://go.dev/dl/ into /usr/local/go"

go_version=$(go env GOVERSION) # e.g. go1.26.8
have=${go_version#go}
if [[ "$(printf '%s\n%s\n' "$GO_MIN_VERSION" "$have" | sort -V | head -n1)" != "$GO_MIN_VERSION" ]]; then
	die "found $go_version at $(command -v go); Paddock needs go${GO_MIN_VERSION} or newer"
fi
log "using $go_version at $(command -v go)"
