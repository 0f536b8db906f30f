# skiff build, test and benchmark entry points. The Go build cache is never
# cleaned here: a cold build of the Kubernetes components takes minutes.

GO        ?= go
BIN       := bin/skiff
PKG       := github.com/skiff-dev/skiff
K8S_VERSION   := $(shell $(GO) list -m -f '{{.Version}}' k8s.io/kubernetes)
CONTAINERD_VERSION := $(shell $(GO) list -m -f '{{.Version}}' github.com/containerd/containerd/v2)
K8S_MAJOR     := $(word 1,$(subst ., ,$(patsubst v%,%,$(K8S_VERSION))))
K8S_MINOR     := $(word 2,$(subst ., ,$(K8S_VERSION)))
SKIFF_VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
GIT_COMMIT    := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BUILD_DATE    := $(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo 1970-01-01T00:00:00Z)

# Stamp Kubernetes' version where its components and clients read it, so they
# do not report v0.0.0-master.
VERSION_LDFLAGS := \
	-X $(PKG)/pkg/version.Version=$(SKIFF_VERSION) \
	-X $(PKG)/pkg/version.GitCommit=$(GIT_COMMIT) \
	-X github.com/containerd/containerd/v2/version.Version=$(CONTAINERD_VERSION) \
	$(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version, \
		-X $(p).gitVersion=$(K8S_VERSION) \
		-X $(p).gitMajor=$(K8S_MAJOR) \
		-X $(p).gitMinor=$(K8S_MINOR) \
		-X $(p).gitTreeState=clean \
		-X $(p).buildDate=$(BUILD_DATE))

export CGO_ENABLED := 1

# One static binary that runs on any Linux of its architecture, as k3s's:
# cgo (SQLite) linked statically, the pure-Go resolver and user lookup
# (glibc's would need its shared libraries at run time), and no dlopen.
# `make build`, `make release`, vet, the tests and the bench all compile
# with the same tags (GO_TAGS), so they share one build cache instead of
# compiling Kubernetes twice.
GO_TAGS       := -tags=netgo,osusergo,sqlite_omit_load_extension
BUILD_FLAGS   = $(GO_TAGS) -ldflags "-s -w -extldflags -static $(VERSION_LDFLAGS)"
HOST_ARCH     := $(shell $(GO) env GOHOSTARCH)
# armhf (arm) builds too, given Debian's arm-linux-gnueabihf toolchain:
# `make release RELEASE_ARCHES="amd64 arm64 arm"`.
RELEASE_ARCHES ?= amd64 arm64
export RELEASE_ARCHES

.PHONY: all build payload release release-host deps test test-unit test-e2e conformance conformance-bin bench bench-footprint bench-controlplane bench-agent bench-testenv bench-install bench-multinode bench-datastores bench-day2 examples vet clean

all: build

# The node payload (runc, shim, CNI plugins, system images) is embedded in
# the binary; the script only replaces its outputs when their bytes change.
payload:
	scripts/build-payload.sh $(HOST_ARCH)

build: payload
	$(GO) build $(BUILD_FLAGS) -o $(BIN) ./cmd/skiff

# Release artifacts: dist/skiff-<arch> for each of RELEASE_ARCHES, each with
# its own architecture's payload (a cross build with cgo for the others),
# their checksums, and install.sh with skiff-killall.sh, so that dist/ copied
# to a machine installs there with `sudo ./install.sh`. Each artifact is a
# release binary: a launcher followed by the program compressed with zstd,
# which it unpacks once (scripts/pack-release.sh, pkg/selfextract); the
# programs themselves are bin/skiff and bin/skiff-linux-<arch>.
release: release-host
	for arch in $(filter-out $(HOST_ARCH),$(RELEASE_ARCHES)); do \
		scripts/build-payload.sh $$arch && \
		scripts/cross.sh $$arch $(GO) build $(BUILD_FLAGS) -o bin/skiff-linux-$$arch ./cmd/skiff && \
		scripts/pack-release.sh $$arch bin/skiff-linux-$$arch dist/skiff-$$arch || exit 1; \
	done
	cp install.sh scripts/skiff-killall.sh dist/
	cd dist && sha256sum $(addprefix skiff-,$(RELEASE_ARCHES)) > sha256sum.txt
	@ls -l dist

# This machine's release binary alone, which the footprint bench measures.
release-host: build
	@mkdir -p dist
	scripts/pack-release.sh $(HOST_ARCH) $(BIN) dist/skiff-$(HOST_ARCH)

# What building and testing need on a Debian machine (as root; a no-op when
# it is all there): see scripts/install-deps.sh.
deps:
	scripts/install-deps.sh test

vet: payload
	$(GO) vet $(GO_TAGS) ./...
	cd pkg/testenv && $(GO) vet $(GO_TAGS) ./...
	cd pkg/ingress && $(GO) vet $(GO_TAGS) ./...
	cd scripts/payload/addons && $(GO) vet ./...
	cd scripts/payload && $(GO) vet ./containerd ./containerd-shim-runc-v2
	cd internal/memory && $(GO) vet ./...
	@test -z "$$(gofmt -l cmd pkg tests scripts internal)" || { gofmt -l cmd pkg tests scripts internal; echo "gofmt needed"; exit 1; }

# pkg/testenv is a module of its own (so operators can import it without
# Kubernetes' replace lines); its tests start the binary too. pkg/ingress is
# one too (the ingress add-on's program, built into an image), and so is
# internal/memory (shared with the programs of the payload).
test-unit: build
	$(GO) test $(GO_TAGS) -count=1 ./pkg/... ./cmd/... ./internal/...
	cd pkg/ingress && $(GO) test $(GO_TAGS) -count=1 ./...
	cd internal/memory && $(GO) test -count=1 ./...
	cd pkg/testenv && SKIFF_BIN=$(CURDIR)/$(BIN) $(GO) test $(GO_TAGS) -count=1 -timeout 20m ./...

# The release is built too: the arm64 artifact is tested under qemu. The
# conformance suite's API subset runs here too (TestConformanceAPI).
# scripts/go-test.sh repeats the failing tests' messages at the end, below
# the logs their cleanups print.
test-e2e: build release conformance-bin
	SKIFF_BIN=$(CURDIR)/$(BIN) SKIFF_DIST=$(CURDIR)/dist scripts/go-test.sh $(GO) test $(GO_TAGS) -count=1 -timeout 60m -v ./tests/e2e/...

# As root, `make test` first installs what the tests need (the way CI does,
# through .ci/run), and afterwards removes every process, mount, interface
# and netfilter rule its servers left.
test:
	@if [ "$$(id -u)" = 0 ]; then scripts/install-deps.sh test; fi
	$(MAKE) vet test-unit test-e2e; status=$$?; \
	if [ "$$(id -u)" = 0 ]; then scripts/test-cleanup.sh; fi; exit $$status

# Kubernetes' own e2e suite at skiff's Kubernetes version, from the module
# in tests/conformance (kept out of skiff's go.mod): e2e.test, the ginkgo
# runner, and the images its [Conformance] specs run, built here and
# imported by the node instead of pulled (scripts/conformance-images.sh).
# The programs in the images are static (no cgo): most images have no libc.
CONFORMANCE_BIN := $(CURDIR)/bin/conformance
conformance-bin:
	@mkdir -p $(CONFORMANCE_BIN)
	cd tests/conformance && $(GO) test -c $(GO_TAGS) -ldflags "$(VERSION_LDFLAGS)" -o $(CONFORMANCE_BIN)/e2e.test k8s.io/kubernetes/test/e2e
	cd tests/conformance && CGO_ENABLED=0 $(GO) build $(GO_TAGS) -o $(CONFORMANCE_BIN)/ \
		github.com/onsi/ginkgo/v2/ginkgo k8s.io/kubernetes/test/images/agnhost \
		k8s.io/kubernetes/test/images/nonewprivs k8s.io/sample-apiserver
	CGO_ENABLED=0 $(GO) build $(GO_TAGS) -o $(CONFORMANCE_BIN)/etcd go.etcd.io/etcd/server/v3
	scripts/conformance-images.sh $(CONFORMANCE_BIN) $(CONFORMANCE_BIN)/images

# Every [Conformance] spec on a fresh single node (about an hour here; not
# part of `make test`), or those FOCUS (a regular expression) names: the
# JUnit reports and a summary of passed, failed and skipped specs (with each
# skip's reason) go to conformance-report/.
conformance: build conformance-bin
	SKIFF_BIN=$(CURDIR)/$(BIN) SKIFF_CONFORMANCE=all SKIFF_CONFORMANCE_REPORT=$(CURDIR)/conformance-report \
		SKIFF_CONFORMANCE_FOCUS='$(FOCUS)' \
		$(GO) test $(GO_TAGS) -count=1 -timeout 90m -v -run 'TestConformance$$' ./tests/e2e/

bench: release-host
	$(GO) run $(GO_TAGS) ./tests/bench -bin $(CURDIR)/$(BIN) $(BENCHFLAGS)

# #13's targets (memory, node Ready, DNS, binary size, testenv, idle writes),
# each beside its target and anchor, with where the server's heap is.
bench-footprint: release-host
	$(GO) run $(GO_TAGS) ./tests/bench -bin $(CURDIR)/$(BIN) -suite footprint $(BENCHFLAGS)

bench-controlplane: build
	$(GO) run $(GO_TAGS) ./tests/bench -bin $(CURDIR)/$(BIN) -suite controlplane $(BENCHFLAGS)

bench-agent: build
	$(GO) run $(GO_TAGS) ./tests/bench -bin $(CURDIR)/$(BIN) -suite agent $(BENCHFLAGS)

bench-testenv: build
	$(GO) run $(GO_TAGS) ./tests/bench -bin $(CURDIR)/$(BIN) -suite testenv $(BENCHFLAGS)

# The testenv examples and tests: a controller-runtime reconciler, the
# controllers envtest lacks, simulated nodes, ten parallel environments.
examples: build
	cd pkg/testenv && SKIFF_BIN=$(CURDIR)/$(BIN) $(GO) test $(GO_TAGS) -count=1 -v ./...

bench-install: build
	$(GO) run $(GO_TAGS) ./tests/bench -bin $(CURDIR)/$(BIN) -suite install $(BENCHFLAGS)

bench-multinode: build
	$(GO) run $(GO_TAGS) ./tests/bench -bin $(CURDIR)/$(BIN) -suite multinode $(BENCHFLAGS)

bench-datastores: build
	$(GO) run $(GO_TAGS) ./tests/bench -bin $(CURDIR)/$(BIN) -suite datastores $(BENCHFLAGS)

# Snapshots of 10,000 objects, 10 minutes of churn with and without
# compaction, an idle cluster's writes: about 25 minutes.
bench-day2: build
	$(GO) run $(GO_TAGS) ./tests/bench -bin $(CURDIR)/$(BIN) -suite day2 $(BENCHFLAGS)

clean:
	rm -rf bin dist
