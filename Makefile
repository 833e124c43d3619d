# paytest: every target works on a fresh machine of this project's kind.
GO        ?= go
BIN       := bin/paytest
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION) -X main.commit=$(shell git rev-parse --short HEAD 2>/dev/null || echo none)
STATICCHECK := $(shell $(GO) env GOPATH)/bin/staticcheck

.PHONY: build test soak race demo bench lint cross release-check goreleaser-check fuzz clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/paytest

## test: the whole suite against real Postgres, NATS, Redis and Prometheus.
## -parallel 4: the foreign endpoints' rows (attack's only parallel tests)
## mostly wait on their drains and timeouts, not on the CPU.
test:
	$(GO) test -count=1 -parallel 4 -timeout 9m ./...

## soak: the whole crash matrix (every crash profile, safe and with the
## unsafe mode that breaks it, three seeds, as shipped) and its table.
soak:
	PAYTEST_SOAK=1 $(GO) test -count=1 -v -run '^TestCrashMatrix$$' -timeout 60m ./attack/

## demo: the main job on embedded defaults.
demo: build
	./$(BIN) attack --out runs/demo

## bench: the speed targets, each side by side with its yardstick.
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./...

$(STATICCHECK):
	$(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2

## race: the unit packages (no child processes) under the race detector.
RACE_PKGS := ./verify/ ./attack/client/ ./attack/load/ ./attack/plan/ ./internal/rundir/ ./internal/promql/ ./attack/fault/ \
	./internal/redact/ ./internal/backoff/ ./internal/apperr/ ./internal/crashpoint/ ./profiles/
race:
	$(GO) test -race -count=1 -timeout 9m $(RACE_PKGS)

## lint: vet, staticcheck, gofmt and a tidy go.mod.
lint: $(STATICCHECK)
	$(GO) vet ./...
	$(STATICCHECK) ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt -l:"; echo "$$out"; exit 1; fi
	$(GO) mod tidy -diff

## cross: build and vet (which type-checks the tests too) for every release
## target as releases are built (CGO_ENABLED=0), so that a Linux-only call
## is caught before a release is cut.
CROSS_TARGETS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64
# The Kubernetes manifests' test is the same on every OS, and type-checking
# k8s.io/api for six targets is most of a cold cross build.
CROSS_SKIP := github.com/paytest/paytest/deploy/kubernetes
cross:
	@set -e; for t in $(CROSS_TARGETS); do \
		os=$${t%/*}; arch=$${t#*/}; echo "cross: $$t"; \
		pkgs=$$(GOOS=$$os $(GO) list ./... | grep -vxF '$(CROSS_SKIP)'); \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build ./...; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) vet $$pkgs; \
	done

## release-check: .goreleaser.yaml decoded strictly and checked against
## CROSS_TARGETS, the archives and the image (a test: goreleaser itself takes
## minutes to fetch and build); goreleaser-check runs the real thing.
release-check:
	$(GO) test -count=1 -run '^TestRelease' ./cmd/paytest/
GORELEASER ?= $(GO) run github.com/goreleaser/goreleaser/v2@v2.17.0
goreleaser-check:
	$(GORELEASER) check

## fuzz: run each decoder's and encoder's fuzz target for a while (FUZZTIME, default 30s).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeCharge -fuzztime $(FUZZTIME) ./target/charge
	$(GO) test -run '^$$' -fuzz FuzzDecodeAttempts -fuzztime $(FUZZTIME) ./internal/rundir
	$(GO) test -run '^$$' -fuzz '^FuzzFastDecode$$' -fuzztime $(FUZZTIME) ./internal/rundir
	$(GO) test -run '^$$' -fuzz '^FuzzAppendLine$$' -fuzztime $(FUZZTIME) ./internal/rundir
	$(GO) test -run '^$$' -fuzz FuzzLookupAgreesWithDecoding -fuzztime $(FUZZTIME) ./attack/client

clean:
	rm -rf bin runs
