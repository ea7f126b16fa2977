package api

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkPolicyLoad loads an org of 500 tools and 5,000 rules after one
// rule changed: applying only the change to the held policy (delta), and
// reading the org whole.
func BenchmarkPolicyLoad(b *testing.B) {
	e := newTestEnv(b)
	ctx := context.Background()
	org := e.boot.OrgID
	_, err := e.st.Pool.Exec(ctx, `INSERT INTO tools (id, org_id, name, created_at, updated_at) SELECT 'tl'||n, $1, 'tool'||n, now(), now() FROM generate_series(1,500) n`, org)
	require.NoError(b, err)
	_, err = e.st.Pool.Exec(ctx, `INSERT INTO rules (id, org_id, tool_id, method, permission, created_at, updated_at) SELECT 'ru'||n, $1, 'tl'||(n%500+1), 'm'||n, 'allowed', now(), now() FROM generate_series(1,5000) n`, org)
	require.NoError(b, err)
	c := NewPolicyCache(e.st, slog.New(slog.NewTextHandler(io.Discard, nil)), func(time.Duration, error) {})
	defer c.Stop()
	_, err = c.Get(ctx, org)
	require.NoError(b, err)
	for _, whole := range []bool{false, true} {
		b.Run(map[bool]string{true: "whole", false: "delta"}[whole], func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				_, err = e.st.Pool.Exec(ctx, `UPDATE rules SET permission = CASE permission WHEN 'allowed' THEN 'disabled' ELSE 'allowed' END WHERE id = 'ru7'`)
				require.NoError(b, err)
				prev := (*c.table.Load())[org]
				if whole {
					prev = nil
				}
				b.StartTimer()
				p, _, _, err := compileOrgPolicy(ctx, e.st, org, prev)
				require.NoError(b, err)
				b.StopTimer()
				c.mu.Lock()
				c.storeLocked(org, p)
				c.mu.Unlock()
				b.StartTimer()
			}
		})
	}
}
