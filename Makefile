# reelq — run `make help` for the targets.
GO ?= go
# The version stamped into the binaries (`worker version`, the start log,
# reelq_build_info): the git tag, or tag-commits-ghash, "-dirty" for a
# modified tree. deploy/Dockerfile takes the same two as build args.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X github.com/reelq/reelq/internal/buildinfo.version=$(VERSION) -X github.com/reelq/reelq/internal/buildinfo.revision=$(REVISION)
BIN ?= bin
CMDS ?= ./cmd/...

.PHONY: help demo test test-short bench bench-peers lint cluster build image release clean

help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

demo: ## run a real batch end to end: embedded NATS + provider simulator + worker + enqueue
	@bash scripts/demo.sh

test: ## run every test with the race detector (about 8 minutes on 2 cores; make test-short: no -race)
	@echo "make test: every package with -race: about 8 minutes on 2 cores (456 s measured, on a machine shared with other builds); 'make test-short' runs them without -race"
	@start=$$(date +%s); $(GO) test -race -count=1 ./...; rc=$$?; \
	  echo "make test: $$(( $$(date +%s) - start ))s on $$(nproc 2>/dev/null || echo ?) cores"; exit $$rc

test-short: ## run the tests without the race detector
	$(GO) test -count=1 ./...

bench: ## run the benchmarks (pipeline, rate limiter, limits)
	$(GO) test -run '^$$' -bench . -benchtime 1x ./internal/bench/
	$(GO) test -run '^$$' -bench WaitHighRate ./internal/ratelimit/
	$(GO) test -run '^$$' -bench ReplicaProcesses -benchtime 1x ./internal/ratelimit/

bench-peers: ## compare with raw JetStream, asynq, River and BullMQ (bench/peers/run.sh; installs redis, postgres, bullmq; not run by CI)
	@bash bench/peers/run.sh

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

cluster: ## 3-node NATS cluster + 3 workers as processes; kills a node and a worker mid-batch
	@bash scripts/cluster.sh

build: ## build the binaries into ./bin, stamped with VERSION (git describe)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ $(CMDS)

image: ## build the container image reelq:VERSION (deploy/Dockerfile) with the version stamped
	docker build -f deploy/Dockerfile --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t reelq:$(VERSION) .

release: ## tag a release: make release VERSION=vX.Y.Z (docs/releasing.md)
	@bash scripts/release.sh $(VERSION)

clean: ## remove build output and demo data
	rm -rf bin data
