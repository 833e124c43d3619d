# paytest: every target works on a fresh machine of this project's kind.
GO        ?= go
BIN       := bin/paytest
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION) -X main.commit=$(shell git rev-parse --short HEAD 2>/dev/null || echo none)
STATICCHECK := $(shell $(GO) env GOPATH)/bin/staticcheck

.PHONY: build test soak race demo bench lint fuzz clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/paytest

## test: the whole suite against real Postgres, NATS, Redis and Prometheus.
test:
	$(GO) test -count=1 -timeout 9m ./...

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

## fuzz: run each decoder's fuzz target for a while (FUZZTIME, default 30s).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeCharge -fuzztime $(FUZZTIME) ./target/charge
	$(GO) test -run '^$$' -fuzz FuzzDecodeAttempts -fuzztime $(FUZZTIME) ./internal/rundir

clean:
	rm -rf bin runs
