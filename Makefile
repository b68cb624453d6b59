# vmbuild — see README. Main entry points:
#
#   make demo    deps, the demo's tools (buildkitd, registry), build, then the
#                demo (hack/demo.sh): a signed image pushed to a loopback
#                registry, verified against a policy
#   make test    deps, all tools, build, then tests, fuzzing, benchmarks (hack/test.sh)
#
#   make deps    system packages via apt-get (hack/install-deps.sh; root)
#   make tools   pinned buildkitd, buildctl, registry, cosign (v2), cosign3 into bin/
#   make demo-tools  only buildkitd and registry (what the demo runs)
#   make build   bin/vmbuild and bin/vmbuild-helper
#   make demo-inputs  only the demo's base image layout and upstream repository
#   make fuzz    only the short fuzz runs
#   make clean   build outputs and demo inputs (keeps the tools: `make distclean`)

SHELL := /bin/sh
# Go may be installed in /usr/local/go without being on PATH (as on a fresh
# machine of this kind); the scripts under hack/ call go too.
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
DEMO_OUT ?= out/demo
# Parallel jobs for the tools (and, in test and demo, vmbuild) builds. On 2
# cores the builds mostly compete for CPU, but running them side by side
# overlaps their module downloads (about 3.5 minutes serially on a fresh
# machine) and their single-threaded links with the others' compiles.
JOBS ?= 4

# Versions stamped into the binaries (buildkitd reports its version to
# clients, e.g. for provenance), read from the pins in tools/go.mod.
BUILDKIT_VERSION = $(shell awk '$$1 == "github.com/moby/buildkit" { print $$2 }' tools/go.mod)
TOOLS_LDFLAGS = -s -w -X github.com/moby/buildkit/version.Version=$(BUILDKIT_VERSION)
# Static, no DWARF (smaller, faster links), no VCS stamping of the tools module.
TOOLS_GOFLAGS = -trimpath -buildvcs=false

# What the demo runs: buildkitd (vmbuild's managed daemon) and the
# distribution registry (the loopback registry it publishes to). buildctl
# and the two cosign CLIs are for the tests and benchmarks only.
TOOLS_DEMO := bin/buildkitd bin/registry
TOOLS := $(TOOLS_DEMO) bin/buildctl bin/cosign bin/cosign3

.DEFAULT_GOAL := build
.PHONY: all deps tools demo-tools build demo demo-inputs test warm-cache fuzz clean distclean FORCE

all: build

deps:
	@hack/install-deps.sh

# Each tool is rebuilt only when missing or when its module's go.mod or
# go.sum changed. `go build` leaves an up-to-date binary untouched, so the
# targets are touched to record the rebuild for make. Each rule says what
# it compiles and why before it starts: on a fresh machine each takes
# minutes, with no other output.
tools:
	@$(MAKE) -s --no-print-directory -j$(JOBS) $(TOOLS)

demo-tools:
	@$(MAKE) -s --no-print-directory -j$(JOBS) $(TOOLS_DEMO)

$(TOOLS_DEMO) &: tools/go.mod tools/go.sum
	@echo "tools: compiling buildkitd and registry (pinned in tools/go.mod: vmbuild's build daemon and the distribution registry) — the first time takes a few minutes"
	@mkdir -p bin
	@cd tools && CGO_ENABLED=0 $(GO) build $(TOOLS_GOFLAGS) -ldflags='$(TOOLS_LDFLAGS)' -o ../bin/ \
		github.com/moby/buildkit/cmd/buildkitd \
		github.com/distribution/distribution/v3/cmd/registry
	@touch $(TOOLS_DEMO)
	@echo "tools: bin/buildkitd, bin/registry ready"

# After buildkitd (order only), whose compile leaves most of buildctl's
# packages in the build cache: compiled side by side, both would compile them.
bin/buildctl: tools/go.mod tools/go.sum | bin/buildkitd
	@echo "tools: compiling buildctl (pinned in tools/go.mod: BuildKit's CLI, for the tests and benchmarks) — the first time takes a minute or two"
	@mkdir -p bin
	@cd tools && CGO_ENABLED=0 $(GO) build $(TOOLS_GOFLAGS) -ldflags='$(TOOLS_LDFLAGS)' -o ../bin/ \
		github.com/moby/buildkit/cmd/buildctl
	@touch $@
	@echo "tools: bin/buildctl ready"

bin/cosign: tools/cosign2/go.mod tools/cosign2/go.sum
	@echo "tools: compiling cosign v2 (pinned in tools/cosign2/go.mod: the tests check stock cosign reads what vmbuild publishes) — the first time takes a few minutes"
	@mkdir -p bin
	@cd tools/cosign2 && CGO_ENABLED=0 $(GO) build $(TOOLS_GOFLAGS) -ldflags='-s -w' -o ../../bin/cosign github.com/sigstore/cosign/v2/cmd/cosign
	@touch $@
	@echo "tools: bin/cosign ready"

bin/cosign3: tools/cosign3/go.mod tools/cosign3/go.sum
	@echo "tools: compiling cosign v3 (pinned in tools/cosign3/go.mod: the tests check stock cosign reads what vmbuild publishes) — the first time takes a few minutes"
	@mkdir -p bin
	@cd tools/cosign3 && CGO_ENABLED=0 $(GO) build $(TOOLS_GOFLAGS) -ldflags='-s -w' -o ../../bin/cosign3 github.com/sigstore/cosign/v3/cmd/cosign
	@touch $@
	@echo "tools: bin/cosign3 ready"

# Always handed to go build, which knows what is up to date.
build: FORCE
	@echo "build: compiling bin/vmbuild and bin/vmbuild-helper (go build: seconds when nothing changed, a few minutes the first time)"
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/vmbuild ./cmd/vmbuild
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags='-s -w -buildid=' -o bin/vmbuild-helper ./cmd/vmbuild-helper

# deps, then the demo's tools and build side by side, then the demo. Only
# what the demo runs is compiled: not buildctl, not cosign.
demo: deps
	@$(MAKE) -s --no-print-directory -j$(JOBS) $(TOOLS_DEMO) build
	DEMO_OUT='$(DEMO_OUT)' hack/demo.sh

demo-inputs:
	$(GO) run ./hack/mkdemo

# deps, then tools, build and a warm-up of the module's build cache side by
# side, then hack/test.sh.
test: deps
	@hack/install-deps.sh --test
	@$(MAKE) -s --no-print-directory -j$(JOBS) $(TOOLS) build warm-cache
	hack/test.sh

# Compiles the module's packages into the build cache while the tools
# build; compile errors are go test's to report.
warm-cache:
	@$(GO) build ./... >/dev/null 2>&1 || true

fuzz:
	hack/fuzz.sh

clean:
	rm -f bin/vmbuild bin/vmbuild-helper
	rm -rf out recipes/demo/base recipes/demo/upstream.git

distclean: clean
	rm -rf bin .cache

FORCE:
