// Package validate checks reelq's deployment files offline, in Go tests:
// the Kubernetes manifests (strictly decoded into k8s.io/api types, unknown
// fields rejected, plus consistency checks), the KEDA ScaledObject, the NATS
// Helm values, the Compose file (loaded and schema-validated by
// compose-spec/compose-go, the loader docker compose uses), the NATS server
// configs (loaded by nats-server's own config loader; routes authenticated
// on real servers, monitoring on loopback), the shutdown grace periods and
// the Dockerfile.
//
// It is a separate module so that its heavy dependencies (Kubernetes API
// types, the Compose loader) stay out of reelq's main module. Run it with
// deploy/validate.sh or `cd deploy/validate && go test ./...`.
package validate
