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

.PHONY: all build payload test test-unit test-e2e bench bench-controlplane bench-agent bench-testenv examples vet clean

all: build

# The node payload (runc, shim, CNI plugins, pause image) is embedded in the
# binary; the script only replaces its outputs when their bytes change.
payload:
	scripts/build-payload.sh

build: payload
	$(GO) build -ldflags "-s -w $(VERSION_LDFLAGS)" -o $(BIN) ./cmd/skiff

vet: payload
	$(GO) vet ./...
	cd pkg/testenv && $(GO) vet ./...
	cd pkg/ingress && $(GO) vet ./...
	@test -z "$$(gofmt -l cmd pkg tests)" || { gofmt -l cmd pkg tests; echo "gofmt needed"; exit 1; }

# pkg/testenv is a module of its own (so operators can import it without
# Kubernetes' replace lines); its tests start the binary too. pkg/ingress is
# one too (the ingress add-on's program, built into an image).
test-unit: build
	$(GO) test -count=1 ./pkg/... ./cmd/...
	cd pkg/ingress && $(GO) test -count=1 ./...
	cd pkg/testenv && SKIFF_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 20m ./...

test-e2e: build
	SKIFF_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 40m -v ./tests/e2e/...

test: vet test-unit test-e2e

bench: build
	$(GO) run ./tests/bench -bin $(CURDIR)/$(BIN) $(BENCHFLAGS)

bench-controlplane: build
	$(GO) run ./tests/bench -bin $(CURDIR)/$(BIN) -suite controlplane $(BENCHFLAGS)

bench-agent: build
	$(GO) run ./tests/bench -bin $(CURDIR)/$(BIN) -suite agent $(BENCHFLAGS)

bench-testenv: build
	$(GO) run ./tests/bench -bin $(CURDIR)/$(BIN) -suite testenv $(BENCHFLAGS)

# The testenv examples and tests: a controller-runtime reconciler, the
# controllers envtest lacks, simulated nodes, ten parallel environments.
examples: build
	cd pkg/testenv && SKIFF_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -v ./...

clean:
	rm -rf bin
