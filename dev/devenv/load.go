package devenv

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"oakallow/activities/sealed"
	"oakallow/activities/tokens"
	"oakallow/store"
)

// LoadStore opens the database a load generator (dev/loadcheck,
// dev/loadpolicy) measures against: LoadDatabase's, with a pool of at most
// maxConns connections. stop closes the store and stops and removes what
// LoadStore started.
func LoadStore(ctx context.Context, url, name string, maxConns int32) (st *store.Store, stop func(), err error) {
	url, stopDB, err := LoadDatabase(ctx, url, name)
	if err != nil {
		return nil, nil, err
	}
	st, err = store.Open(ctx, store.Config{URL: url, MaxConns: maxConns})
	if err != nil {
		stopDB()
		return nil, nil, err
	}
	return st, func() { st.Close(); stopDB() }, nil
}

// LoadDatabase returns the URL of the database a load generator measures
// against: url when it is set, else a fresh database named name in a
// throwaway PostgreSQL cluster with fsync on, as in production, whose data
// directory is under os.TempDir(). The database is migrated. stop stops and
// removes what LoadDatabase started.
func LoadDatabase(ctx context.Context, url, name string) (dbURL string, stop func(), err error) {
	var undo []func()
	undoAll := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	defer func() {
		if err != nil {
			undoAll()
		}
	}()
	if url == "" {
		dir, err := os.MkdirTemp("", "oakallow-"+name+"-")
		if err != nil {
			return "", nil, err
		}
		undo = append(undo, func() { _ = os.RemoveAll(dir) })
		_ = os.Chmod(dir, 0o755)
		pg, err := StartPostgres(ctx, PostgresConfig{Dir: filepath.Join(dir, "pg")})
		if err != nil {
			return "", nil, err
		}
		undo = append(undo, pg.Stop)
		if err := EnsureDatabase(ctx, pg.URL("postgres"), name); err != nil {
			return "", nil, err
		}
		url = pg.URL(name)
	}
	if _, err := store.Migrate(ctx, url); err != nil {
		return "", nil, err
	}
	return url, undoAll, nil
}

// LoadAverage is /proc/loadavg's first three fields ("unknown" where there
// is none): load figures from a shared machine mean little without it.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// LoadSecrets returns a fresh token keyring and secrets box for the API
// servers of a load run (every replica of a run shares them, as in
// production).
func LoadSecrets() (*tokens.Keyring, *sealed.Box, error) {
	key, err := tokens.GenerateKey("load1")
	if err != nil {
		return nil, nil, err
	}
	kr, err := tokens.NewKeyring("load1", key)
	if err != nil {
		return nil, nil, err
	}
	boxKey, err := sealed.NewKey()
	if err != nil {
		return nil, nil, err
	}
	raw, err := sealed.ParseKey(boxKey)
	if err != nil {
		return nil, nil, err
	}
	box, err := sealed.NewBox(raw)
	if err != nil {
		return nil, nil, err
	}
	return kr, box, nil
}
