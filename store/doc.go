// Package store is oakallow's PostgreSQL layer: the pgx pool, the embedded
// schema migrations (applied with tern under an advisory lock), and the
// queries, written as SQL in queries/*.sql and generated with sqlc into this
// package (the sqlc_*.go and *.sql.go files; regenerate with `make sqlc`).
//
// Database errors are translated exactly once, by translateErr: no rows
// becomes ErrNotFound, a unique or exclusion violation becomes ErrConflict,
// a foreign-key violation becomes ErrReferenced. Every query the generated
// code runs goes through the translating DBTX returned by DB, so callers only
// ever see these sentinel errors (wrapped with detail) and never pgx's.
//
// Time is always a parameter of the queries (never now() in SQL), so tests
// can pin it.
package store
