#!/usr/bin/env bash
# Validates reelq's deployment files offline (no cluster, no Docker engine,
# no network beyond the Go module proxy for the validator's dependencies).
# Exits non-zero on any failure.
#
#   deploy/validate.sh            manifests, Compose file, Helm values, NATS
#                                 configs, Dockerfile (a few seconds)
#   deploy/validate.sh --static   also build worker/enqueue/providersim as the
#                                 Dockerfile does and check they are static
#
# What runs: the Go tests of the separate module deploy/validate (see its
# doc.go): Kubernetes manifests strictly decoded into k8s.io/api types,
# the KEDA ScaledObject against the nats-jetstream scaler's parameters, the
# Compose file through compose-go (the loader docker compose uses, with the
# Compose JSON schema embedded), the NATS configs through nats-server's own
# loader, the Helm values against deploy/nats/auth.conf, the Dockerfile,
# and reelq's chart (deploy/helm/reelq) through `helm lint --strict` and
# `helm template`, its rendering held to the checks of deploy/k8s (needs
# helm: `go install helm.sh/helm/v4/cmd/helm@v4.3.2`; without it the chart
# tests skip, except under CI=true where they fail), and the alert rules
# (deploy/prometheus) through `promtool check rules` and `promtool test
# rules` (Debian's prometheus package; the same rule for a missing tool).
# The permission set itself is exercised end to end by the main module's
# `go test ./cmd/worker` (security_test.go: the whole batch, the permission
# matrix of SECURITY.md, consumer ownership, inbox isolation, no leaks).
set -euo pipefail
cd "$(dirname "$0")/validate"

static=0
for arg in "$@"; do
	case "$arg" in
	--static) static=1 ;;
	-h | --help)
		sed -n '2,12p' "$0"
		exit 0
		;;
	*)
		echo "validate.sh: unknown argument $arg" >&2
		exit 2
		;;
	esac
done

unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "validate.sh: not gofmt-ed: $unformatted" >&2
	exit 1
fi
go vet ./...
REELQ_STATIC_CHECK=$static go test -count=1 ./...
echo "deploy: all checks passed"
