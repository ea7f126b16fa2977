package devenv

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// TestFastPostgresKeepsCommitsAcrossAKill: a fast cluster gives up
// durability against a machine crash only. A row committed just before the
// server is killed is there once supervise has restarted it — the dev stack
// seeds its keys and is then killed by TestDeadPostgresIsRestarted, and
// losing them made its correct key count as failed authentications until the
// address was locked out.
func TestFastPostgresKeepsCommitsAcrossAKill(t *testing.T) {
	base, err := os.MkdirTemp("", "oakallow-devenv-pg-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(base, 0o755))
	t.Cleanup(func() { os.RemoveAll(base) })
	ctx := context.Background()
	pg, err := StartPostgres(ctx, PostgresConfig{Dir: filepath.Join(base, "data"), Fast: true})
	require.NoError(t, err)
	t.Cleanup(pg.Stop)

	deadline := time.Now().Add(2 * time.Minute) // a hang, not a budget
	connect := func() *pgx.Conn {
		for {
			c, err := pgx.Connect(ctx, pg.URL("postgres"))
			if err == nil {
				return c
			}
			require.True(t, time.Now().Before(deadline), "postgres did not come back: %v", err)
			time.Sleep(50 * time.Millisecond)
		}
	}
	c := connect()
	var sc string
	require.NoError(t, c.QueryRow(ctx, "SHOW synchronous_commit").Scan(&sc))
	require.Equal(t, "on", sc, "an asynchronous commit dies with the server")
	_, err = c.Exec(ctx, "CREATE TABLE kept (n int)")
	require.NoError(t, err)
	_ = c.Close(ctx)

	// Each round commits and kills at once; with asynchronous commits a
	// round loses its row about one time in five.
	for n := range 5 {
		c := connect()
		_, err := c.Exec(ctx, "INSERT INTO kept VALUES ($1)", n)
		require.NoError(t, err)
		pid := pg.PID()
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
		_ = c.Close(ctx)
		for pg.PID() == pid {
			require.True(t, time.Now().Before(deadline), "postgres was not restarted")
			time.Sleep(50 * time.Millisecond)
		}
		c = connect()
		var got int
		require.NoError(t, c.QueryRow(ctx, "SELECT count(*) FROM kept WHERE n = $1", n).Scan(&got))
		require.Equal(t, 1, got, "round %d: the committed row is gone after the kill", n)
		_ = c.Close(ctx)
	}
}
