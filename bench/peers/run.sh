#!/usr/bin/env bash
# The peers comparison: reelq's job path against raw JetStream, asynq
# (Redis), River (Postgres) and BullMQ (Redis, Node), each with its own
# dedupe on and its own server process (docs/testing.md#peers). A manual
# benchmark: CI does not run it. Installs what it needs (redis-server,
# postgresql and node through apt-get when absent, bullmq through npm, Go
# modules through the module proxy), builds nats-server from the main
# module, then runs the rounds. Flags go to the program, e.g.
#   bench/peers/run.sh -rounds 1 -jobs 5000 -systems jetstream,reelq
set -euo pipefail
cd "$(dirname "$0")"
export GOFLAGS= GOTOOLCHAIN=local

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
(cd node && npm ci --no-audit --no-fund --loglevel=error >&2)

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
(cd ../.. && go build -o "$bin/nats-server" github.com/nats-io/nats-server/v2)
go build -o "$bin/peers" .
echo "$(date -u +%FT%TZ) $(nproc) cores; load: $(uptime | sed 's/.*load average: //')" >&2
"$bin/peers" -nats-server "$bin/nats-server" -node-dir "$PWD/node" "$@"
echo "load after: $(uptime | sed 's/.*load average: //')" >&2
