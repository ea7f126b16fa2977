// Package devenv starts the pieces of the embedded development environment — a
// throwaway PostgreSQL cluster and an in-process Temporal server with its Web UI —
// for `go run ./dev` and for tests.
//
// # Temporal
//
// [StartTemporal] runs a complete Temporal cluster (frontend, history, matching and
// worker services) inside the calling process, the way `temporal server start-dev`
// does: persistence and visibility live in SQLite, membership is static, metrics
// and pprof are off, and every listener binds to a loopback address. It returns
// once the frontend answers for the configured namespace, so callers can dial a
// client and register workers straight away.
//
// With [TemporalConfig.Dir] set, state is kept in Dir/temporal.db (SQLite in WAL
// journal mode): the first start creates the schema and the namespace, later
// starts reuse both, so workflow histories survive restarts of `go run ./dev`.
// A lock file (Dir/temporal.lock) stops two servers from sharing one database.
// With Dir empty the database lives in memory and disappears with the server,
// which is what tests want; several such servers can run in one process.
//
// Custom search attributes listed in [TemporalConfig.SearchAttributes] are
// registered on the namespace at every start (adding only the missing ones) and
// can be used in visibility queries as soon as StartTemporal returns.
//
// The Temporal Web UI (github.com/temporalio/ui-server) is served from assets
// embedded in that Go module, so it works without network access.
//
// This package is for development and tests only: the server has no
// authentication and no TLS, which is why it refuses to listen anywhere but on
// loopback.
package devenv
