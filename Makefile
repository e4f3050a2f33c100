# Paddock's build. `make` (or `make help`) lists the targets.

export PATH := /usr/local/go/bin:$(PATH)
export GOFLAGS ?= -buildvcs=false

SHELL := bash
.SHELLFLAGS := -euo pipefail -c

# Arguments passed through to programs the targets run.
UP_ARGS ?=
BENCH_ARGS ?=
# How long `make fuzz` runs each fuzz target, and where it looks for them.
FUZZTIME ?= 20s
FUZZPKGS ?= ./...
# Test binaries run in parallel: the machines have 2 cores.
TEST_PARALLEL ?= 2

# Lists, NUL-separated, the Go files that gofmt checks: everything but build
# output, testdata and hidden directories.
FIND_GOFILES = find . -name '*.go' -not -path './bin/*' -not -path '*/testdata/*' -not -path '*/.*' -print0

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Install the Debian packages and check the Go toolchain the build needs
	@hack/deps.sh

.PHONY: build
build: deps ## Build every command under cmd/ into bin/, and the example runtime plugin
	@mkdir -p bin
	go build -o bin/ ./cmd/...
	go build -o bin/paddock-example-runtime ./examples/runtime-plugin
	@$(MAKE) --no-print-directory bin/runsc bin/containerd-shim-runsc-v1

# runsc, the gVisor kernel of the gvisor runtime class, from the release
# tools/gvisor pins (its own module: gVisor needs an older runtime-spec).
# It takes minutes to build, so only when that pin changes.
bin/runsc: tools/gvisor/go.mod tools/gvisor/go.sum
	@mkdir -p bin
	cd tools/gvisor && CGO_ENABLED=0 go build -o ../../bin/runsc gvisor.dev/gvisor/runsc

# containerd-shim-runsc-v1, containerd's shim for gVisor (the
# containerd-gvisor runtime class), from the same pin (tools/gvisor/shim:
# gVisor's shim, able to start without CAP_SYS_RESOURCE). containerd finds
# it in its PATH; the containerd plugin tells it to run bin/runsc.
bin/containerd-shim-runsc-v1: tools/gvisor/go.mod tools/gvisor/go.sum tools/gvisor/shim/main.go
	@mkdir -p bin
	cd tools/gvisor && CGO_ENABLED=0 go build -o ../../bin/containerd-shim-runsc-v1 ./shim

.PHONY: testimages
testimages: deps ## Build the offline test images build/images/{busybox,server}.tar (OCI archives)
	@mkdir -p build/images
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w -buildid=' -o build/server ./test/images/server
	go run ./test/images/build -busybox /bin/busybox -server build/server -out build/images

UP_DATA_DIR ?= /var/lib/paddock

.PHONY: up
up: build testimages ## Run an all-in-one cluster on this machine, test images preloaded (bin/paddock up --data-dir $(UP_DATA_DIR) $(UP_ARGS))
	@mkdir -p $(UP_DATA_DIR)/agent/import && cp build/images/*.tar $(UP_DATA_DIR)/agent/import/
	bin/paddock up --data-dir $(UP_DATA_DIR) $(UP_ARGS)

.PHONY: test
test: deps build testimages verify ## Verify, then run every test (CI=true turns skips for missing prerequisites into failures)
	CI=$${CI:-} PADDOCK_BIN=$(CURDIR)/bin/paddock go test -count=1 -timeout 20m -p $(TEST_PARALLEL) ./...
	@$(MAKE) --no-print-directory conformance

.PHONY: conformance
conformance: build testimages ## Run the runtime and network conformance suites against every plugin in bin/ (reports in build/conformance/)
	@# A runtime plugin that needs a daemon has a script that starts one: hack/conformance/runtime-NAME.sh.
	@for p in bin/paddock-runtime-*; do \
		name=$${p#bin/paddock-runtime-}; \
		echo "conformance: runtime plugin $$name"; \
		if [ -x hack/conformance/runtime-$$name.sh ]; then \
			hack/conformance/runtime-$$name.sh build/conformance/$$name || exit 1; \
		else \
			bin/paddock conformance runtime --plugin $$p --report-dir build/conformance/$$name || exit 1; \
		fi; \
	done
	@# Network plugins run with names of their own (hack/conformance/net-NAME.json), so that a
	@# cluster on this machine keeps its bridge and tables; what they leave is removed after.
	@for p in bin/paddock-net-*; do \
		name=$${p#bin/paddock-net-}; \
		echo "conformance: network plugin $$name"; \
		rc=0; bin/paddock conformance network --plugin $$p --plugin-config hack/conformance/net-$$name.json \
			--report-dir build/conformance/net-$$name || rc=$$?; \
		ip link del pdconf0 2>/dev/null || true; \
		for family in inet bridge; do nft delete table $$family paddock-conformance 2>/dev/null || true; done; \
		[ $$rc = 0 ] || exit $$rc; \
	done

.PHONY: verify
verify: ## Check formatting, go vet and the module checksums
	@unformatted=$$($(FIND_GOFILES) | xargs -0 -r gofmt -l); \
	if [[ -n "$$unformatted" ]]; then \
		echo "gofmt needed (run make fmt):"; echo "$$unformatted"; exit 1; \
	fi
	go vet ./...
	go mod verify
	@$(MAKE) --no-print-directory verify-generate

.PHONY: generate
generate: deps ## Regenerate the Go code of the plugin protocols (.proto files under plugins/)
	hack/generate.sh

.PHONY: verify-generate
verify-generate: ## Fail if the checked-in generated code differs from what make generate produces
	@hack/generate.sh >/dev/null
	@if ! git diff --quiet -- plugins; then \
		echo "generated code is stale (run make generate and commit):"; git diff --stat -- plugins; exit 1; \
	fi

.PHONY: fmt
fmt: ## Format all Go files in place
	$(FIND_GOFILES) | xargs -0 -r gofmt -w

.PHONY: fuzz
fuzz: ## Run every Fuzz* target (in FUZZPKGS, default all) for FUZZTIME (default 20s) each
	@targets=$$(go test -list '^Fuzz' $(FUZZPKGS) | awk '/^Fuzz/ {names[n++] = $$1; next} /^ok/ {for (i = 0; i < n; i++) print $$2 " " names[i]; n = 0}'); \
	if [[ -z "$$targets" ]]; then echo "no fuzz targets"; exit 0; fi; \
	while read -r pkg name; do \
		echo "fuzz: $$pkg $$name for $(FUZZTIME)"; \
		go test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
	done <<< "$$targets"

.PHONY: bench
bench: build ## Run the benchmarks against the raw floors (bin/paddock-bench $(BENCH_ARGS))
	bin/paddock-bench $(BENCH_ARGS)

.PHONY: clean
clean: ## Remove build output and the test cache
	rm -rf bin
	go clean -testcache
