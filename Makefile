# reelq — run `make help` for the targets.
GO ?= go

.PHONY: help demo test test-short bench lint cluster build clean

help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

demo: ## run a real batch end to end: embedded NATS + provider simulator + worker + enqueue
	@bash scripts/demo.sh

test: ## run every test with the race detector
	$(GO) test -race -count=1 ./...

test-short: ## run the tests without the race detector
	$(GO) test -count=1 ./...

bench: ## run the benchmarks (pipeline, rate limiter, limits)
	$(GO) test -run '^$$' -bench . -benchtime 1x ./internal/bench/
	$(GO) test -run '^$$' -bench WaitHighRate ./internal/ratelimit/
	$(GO) test -run '^$$' -bench ReplicaProcesses -benchtime 1x ./internal/ratelimit/

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

cluster: ## 3-node NATS cluster + 3 workers as processes; kills a node and a worker mid-batch
	@bash scripts/cluster.sh

build: ## build the binaries into ./bin
	$(GO) build -o bin/ ./cmd/...

clean: ## remove build output and demo data
	rm -rf bin data
