// Package opa pins the Open Policy Agent release that the side-by-side
// benchmark (go run ./dev/loadpeers) runs as its peer, and holds the test
// that the benchmark's Rego policy (dev/loadgen/policy.rego) decides every
// check exactly as oakallow's resolver does.
//
// It is a module of its own so that OPA's dependencies (newer gRPC,
// OpenTelemetry and others than the Temporal server builds with) never enter
// oakallow's module graph: only `go run ./dev/loadpeers`, which builds the
// pinned `opa` tool from this module (`go build -C dev/opa -o … github.com/open-policy-agent/opa`),
// and this package's test compile OPA.
package opa
