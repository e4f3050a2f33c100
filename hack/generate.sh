#!/usr/bin/env bash
# Regenerates the Go code of every .proto under plugins/ with the pinned
# protoc-gen-go and protoc-gen-go-grpc (go.mod's tool directives) and
# Debian's protoc.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
go build -o "$bin/protoc-gen-go-grpc" google.golang.org/grpc/cmd/protoc-gen-go-grpc
find plugins -name '*.proto' -print0 | while IFS= read -r -d '' proto; do
	dir=$(dirname "$proto")
	protoc --plugin=protoc-gen-go="$bin/protoc-gen-go" --plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" \
		-I "$dir" --go_out="$dir" --go_opt=paths=source_relative \
		--go-grpc_out="$dir" --go-grpc_opt=paths=source_relative,require_unimplemented_servers=false \
		"$proto"
	echo "generated $dir from $(basename "$proto")"
done
