// Package devstack starts and stops the whole of oakallow on one machine, in
// the calling process: a PostgreSQL cluster (or DATABASE_URL), an embedded
// Temporal server with its Web UI, migrations, the worker and the API. It is
// what `go run ./dev` runs and what the dev load tools (dev/loadapprovals)
// measure, so a figure recorded in docs/PERFORMANCE.md is a figure of the dev
// environment a developer actually gets.
//
// # Data directory
//
// Everything lives under [Options.Dir]:
//
//	pg/                the PostgreSQL cluster (initdb on first start)
//	temporal/          Temporal's SQLite database (workflow histories survive restarts)
//	state.json         the PostgreSQL port, so URLs stay stable between runs
//	signing-keys       the execution-token signing key (0600)
//	secret-key         the key that seals secrets at rest (0600)
//	credentials.json   API URL, org, both API keys, Temporal and database URLs (0600)
//
// The first start seeds a team, an owner, an org and a management and a
// standard API key and writes them to credentials.json; later starts reuse
// them. [Options.Throwaway] puts all of it in a fresh temporary directory that
// [Stack.Stop] removes, for load runs and tests that must not touch a
// developer's data.
//
// # PostgreSQL supervision
//
// The cluster's server is supervised ([devenv.Postgres]): if it dies (killed,
// crashed, shut down from outside) it is started again on the same port with a
// growing pause between restarts in a row, each restart logged at warn level.
// The API answers 503 for the few moments it is down, then recovers by itself.
//
// # Garbage collector
//
// [Start] sets the process's collector to GOGC=400 with a 2 GiB soft memory limit, unless
// the environment sets GOGC or GOMEMLIMIT: everything runs in one process and allocates
// heavily, and at the default GOGC=100 the collector took a tenth of its CPU under load.
//
// # PostgreSQL durability
//
// The cluster runs with fsync on unless [Options.FastPostgres] is set. Fast
// mode is for tests only: measurements taken with it would not be figures of
// a real deployment.
package devstack
