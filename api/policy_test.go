package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"oakallow/store"
)

// Policy freshness: a write is served at once by the replica that took it,
// other replicas converge by notification, no notification is lost to a
// load in progress, and no org's load holds up another org or the keys.

// listenerBarrier returns once the server's change listener has handled
// every notification sent before the call: it adds a key and waits until
// the server authenticates it, and the listener handles notifications in
// order.
func (e *testEnv) listenerBarrier(orgID string) {
	e.t.Helper()
	var key string
	require.NoError(e.t, e.st.InTx(context.Background(), func(_ pgx.Tx, q *store.Queries) error {
		var err error
		if key, err = createKey(context.Background(), q, orgID, TierStandard, "barrier", e.boot.UserID, time.Now()); err != nil {
			return err
		}
		return q.NotifyChange(context.Background(), "keys")
	}))
	require.Eventually(e.t, func() bool {
		status, _ := e.do(http.MethodGet, "/v1/credits", key, nil)
		return status == http.StatusOK
	}, 5*time.Second, 5*time.Millisecond, "the server never learned the barrier key")
}

// stallPolicyLoads holds an exclusive lock on the rules table and on the
// policy change log's horizon, so every policy load (a whole one reads
// tools, categories, then rules; one of the changes only reads the horizon
// first) stops there until release is called: a stand-in for a slow load,
// such as one compiling expensive schemas. Writes to tools do not need the
// locks.
func (e *testEnv) stallPolicyLoads() (release func()) {
	e.t.Helper()
	ctx := context.Background()
	tx, err := e.st.Pool.Begin(ctx)
	require.NoError(e.t, err)
	_, err = tx.Exec(ctx, "LOCK TABLE rules, policy_change_horizon IN ACCESS EXCLUSIVE MODE")
	require.NoError(e.t, err)
	done := false
	release = func() {
		if !done {
			done = true
			require.NoError(e.t, tx.Rollback(ctx))
		}
	}
	e.t.Cleanup(release)
	return release
}

// waitForStalledLoads waits until n policy loads wait for a lock that
// stallPolicyLoads holds.
func (e *testEnv) waitForStalledLoads(n int) {
	e.t.Helper()
	require.Eventually(e.t, func() bool {
		var waiting int
		require.NoError(e.t, e.st.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'
			  AND (query LIKE '%FROM rules%' OR query LIKE '%FROM policy_change_horizon%')`).Scan(&waiting))
		return waiting >= n
	}, 5*time.Second, 5*time.Millisecond, "no policy load reached the rules query")
}

// waitUntil polls fn every 5 ms until it reports ok, and fails the test
// after 5 s with what and fn's last description of the state.
func waitUntil(t testing.TB, what string, fn func() (ok bool, state string)) {
	t.Helper()
	var state string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var ok bool
		if ok, state = fn(); ok {
			return
		}
	}
	t.Fatalf("%s; last seen: %s", what, state)
}

// TestWriteIsServedAtOnceByItsReplica: a check sent right after a
// management write, to the server that took it, sees the write — for each
// kind of write that changes the policy — and another replica converges.
func TestWriteIsServedAtOnceByItsReplica(t *testing.T) {
	t.Parallel()
	a := newTestEnv(t)
	b := startEnv(t, a.st, a.boot)
	mk, sk := a.boot.ManagementKey, a.boot.StandardKey
	// Enough rules that a recompile takes a moment, as in a real org.
	_, err := a.st.Pool.Exec(context.Background(), `
		INSERT INTO tenants (id, org_id, name, created_at, updated_at)
		SELECT 'ten_' || g || $1, $1, 'bulk_' || g, now(), now() FROM generate_series(1, 2000) g;
		`, a.boot.OrgID)
	require.NoError(t, err)
	_, err = a.st.Pool.Exec(context.Background(), `
		INSERT INTO rules (id, org_id, tenant_id, method, permission, created_at, updated_at)
		SELECT 'rule_' || g || $1, $1, 'ten_' || g || $1, 'bulk', 'allowed', now(), now() FROM generate_series(1, 2000) g`, a.boot.OrgID)
	require.NoError(t, err)

	verdict := func(e *testEnv, body map[string]any) string {
		t.Helper()
		status, res, raw := e.check(sk, body)
		require.Equal(t, http.StatusOK, status, string(raw))
		return res.Permission + "/" + res.LevelName
	}
	// Both replicas hold the org's policy, so a stale one could answer.
	verdict(a, map[string]any{"tool": "warm"})
	verdict(b, map[string]any{"tool": "warm"})

	converges := func(body map[string]any, want string) {
		t.Helper()
		waitUntil(t, "the other replica never served the change", func() (bool, string) {
			v := verdict(b, body)
			return v == want, v
		})
	}

	for i := range 10 {
		tool := fmt.Sprintf("tool_%d", i)
		check := map[string]any{"tool": tool, "method": "run"}

		a.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk,
			map[string]any{"name": tool, "annotations_acknowledged": true, "default_permission": "allowed"})
		require.Equal(t, "allowed/tool_default", verdict(a, check), "tool created, round %d", i)
		converges(check, "allowed/tool_default")

		rule := decodeAs[Rule](t, a.want(http.StatusCreated, http.MethodPost, "/v1/rules", mk,
			map[string]any{"tool": tool, "method": "run", "permission": "disabled"}))
		require.Equal(t, "disabled/org_tool_method", verdict(a, check), "rule created, round %d", i)

		a.want(http.StatusOK, http.MethodPatch, "/v1/rules/"+rule.ID, mk, map[string]any{"permission": "requires_approval"})
		require.Equal(t, "requires_approval/org_tool_method", verdict(a, check), "rule updated, round %d", i)

		a.want(http.StatusNoContent, http.MethodDelete, "/v1/rules/"+rule.ID, mk, nil)
		require.Equal(t, "allowed/tool_default", verdict(a, check), "rule deleted, round %d", i)

		a.want(http.StatusOK, http.MethodPatch, "/v1/tools/"+tool, mk, map[string]any{"enabled": false})
		require.Equal(t, "disabled/tool_disabled", verdict(a, check), "tool disabled, round %d", i)
		converges(check, "disabled/tool_disabled")

		a.want(http.StatusNoContent, http.MethodDelete, "/v1/tools/"+tool, mk, nil)
		require.Equal(t, "disabled/tool_not_registered", verdict(a, check), "tool deleted, round %d", i)
	}
}

// TestNotificationDuringColdLoadIsNotLost: a change announced while the
// org's policy is being loaded for the first time, after the load read the
// changed table, is served once the load ends — not dropped because the
// org was not yet held.
func TestNotificationDuringColdLoadIsNotLost(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	tool := e.seedTool("send_email", "", ptr("allowed"))
	e.listenerBarrier(e.boot.OrgID) // the seed's notification is behind us

	release := e.stallPolicyLoads()
	first := make(chan string, 1)
	go func() {
		_, res, raw := e.check(e.boot.StandardKey, map[string]any{"tool": "send_email"})
		first <- res.Permission + string(raw)
	}()
	e.waitForStalledLoads(1) // the cold load has read the tools and waits

	require.NoError(t, e.st.InTx(context.Background(), func(tx pgx.Tx, q *store.Queries) error {
		if _, err := tx.Exec(context.Background(), "UPDATE tools SET default_permission = 'disabled' WHERE id = $1", tool); err != nil {
			return err
		}
		_, err := q.NotifyPolicyChange(context.Background(), e.boot.OrgID)
		return err
	}))
	e.listenerBarrier(e.boot.OrgID) // the notification arrived during the load
	release()
	<-first // the check that started the load may see either; it raced the change

	waitUntil(t, "the change announced during the cold load was never applied", func() (bool, string) {
		status, res, raw := e.check(e.boot.StandardKey, map[string]any{"tool": "send_email"})
		return res.Permission == "disabled", fmt.Sprintf("%d %s", status, raw)
	})
}

// otherOrgEnv bootstraps a second org on e's database and server.
func (e *testEnv) otherOrgEnv() *testEnv {
	e.t.Helper()
	other := *e
	other.boot = e.secondOrg()
	return &other
}

// TestKeyRevocationIsNotHeldUpByPolicyLoads: while another org's policy
// load is stuck (as behind a slow schema compile), a key revocation still
// takes effect.
func TestKeyRevocationIsNotHeldUpByPolicyLoads(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	otherEnv := e.otherOrgEnv()
	other := otherEnv.boot
	for _, env := range []*testEnv{e, otherEnv} {
		_, _, raw := env.check(env.boot.StandardKey, map[string]any{"tool": "warm"}) // hold both orgs
		require.NotEmpty(t, raw)
	}

	release := e.stallPolicyLoads()
	require.NoError(t, e.st.NotifyChange(context.Background(), "policy:"+other.OrgID))
	e.waitForStalledLoads(1) // the other org's reload is stuck

	_, err := e.st.Pool.Exec(context.Background(), "UPDATE api_keys SET revoked_at = now() WHERE org_id = $1 AND tier = 'standard'", e.boot.OrgID)
	require.NoError(t, err)
	require.NoError(t, e.st.NotifyChange(context.Background(), "keys"))
	require.Eventually(t, func() bool {
		status, _ := e.do(http.MethodGet, "/v1/credits", e.boot.StandardKey, nil)
		return status == http.StatusUnauthorized
	}, 5*time.Second, 5*time.Millisecond, "a revoked key kept working while another org's policy was loading")
	release()
}

// TestOrgLoadsAreIndependentAndCoalesce uses the cache's test seam to hold
// one org's load: another org's write is served meanwhile, and the many
// notifications the held org receives during its load cost one more load.
func TestOrgLoadsAreIndependentAndCoalesce(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	otherEnv := e.otherOrgEnv()
	other := otherEnv.boot
	c := e.srv.policies
	ctx := context.Background()
	_, err := c.Get(ctx, e.boot.OrgID)
	require.NoError(t, err)
	_, err = c.Get(ctx, other.OrgID)
	require.NoError(t, err)

	held := make(chan struct{})
	started := make(chan struct{}, 100)
	c.mu.Lock()
	c.beforeLoad = func(orgID string) {
		if orgID == other.OrgID {
			started <- struct{}{}
			<-held
		}
	}
	c.mu.Unlock()
	require.NoError(t, e.st.NotifyChange(ctx, "policy:"+other.OrgID))
	<-started // the other org's load is held
	otherEnv.seedTool("held_back", "", ptr("allowed"))
	for range 50 {
		require.NoError(t, e.st.NotifyChange(ctx, "policy:"+other.OrgID))
	}

	// This org's write is served while the other org's load is held.
	e.want(http.StatusCreated, http.MethodPost, "/v1/tools", e.boot.ManagementKey, map[string]any{"name": "deploy",
		"annotations_acknowledged": true, "default_permission": "allowed"})
	_, res, _ := e.check(e.boot.StandardKey, map[string]any{"tool": "deploy"})
	require.Equal(t, "allowed", res.Permission)

	e.listenerBarrier(other.OrgID) // all 51 notifications were handled
	close(held)
	waitUntil(t, "the held org never served its latest change", func() (bool, string) {
		status, res, raw := otherEnv.check(other.StandardKey, map[string]any{"tool": "held_back"})
		return res.Permission == "allowed", fmt.Sprintf("%d %s", status, raw)
	})
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return !c.orgs[other.OrgID].running
	}, 5*time.Second, 5*time.Millisecond)
	require.Len(t, started, 1, "the held load and one more that covers every notification made during it")
}

// TestAnnouncedChangeAlreadySeenCostsNoLoad: the replica that took a write
// has loaded it before answering, so the write's own notification, whose
// transaction that load's snapshot sees, costs no second load; a
// notification of a transaction the policy does not see still does.
func TestAnnouncedChangeAlreadySeenCostsNoLoad(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	c := e.srv.policies
	_, err := c.Get(context.Background(), e.boot.OrgID)
	require.NoError(t, err)
	idle := func() {
		t.Helper()
		waitUntil(t, "the org's loader never went idle", func() (bool, string) {
			c.mu.Lock()
			defer c.mu.Unlock()
			return !c.orgs[e.boot.OrgID].running, ""
		})
	}
	// The listener connects in the background and then reloads everything
	// once; the second barrier's key arrives only after that.
	e.listenerBarrier(e.boot.OrgID)
	e.listenerBarrier(e.boot.OrgID)
	idle()

	var loads atomic.Int64
	c.mu.Lock()
	c.beforeLoad = func(string) { loads.Add(1) }
	c.mu.Unlock()
	e.want(http.StatusCreated, http.MethodPost, "/v1/tools", e.boot.ManagementKey,
		map[string]any{"name": "deploy", "annotations_acknowledged": true})
	e.listenerBarrier(e.boot.OrgID) // the write's notification was handled
	idle()
	require.Equal(t, int64(1), loads.Load(), "the write's own load, and no other")

	// A transaction the served snapshot does not see (one that starts now).
	var xid uint64
	require.NoError(t, e.st.InTx(context.Background(), func(tx pgx.Tx, q *store.Queries) error {
		if err := tx.QueryRow(context.Background(), "SELECT pg_current_xact_id()::text::bigint").Scan(&xid); err != nil {
			return err
		}
		_, err := q.NotifyPolicyChange(context.Background(), e.boot.OrgID)
		return err
	}))
	waitUntil(t, "an announced change the policy did not see was not loaded", func() (bool, string) {
		p, err := c.Get(context.Background(), e.boot.OrgID)
		require.NoError(t, err)
		return p.snapshot.sees(xid), fmt.Sprintf("%d loads", loads.Load())
	})
}

func TestSnapshotSees(t *testing.T) {
	t.Parallel()
	snap, err := parseSnapshot("100:110:102,107")
	require.NoError(t, err)
	for _, c := range []struct {
		xid  uint64
		sees bool
	}{{99, true}, {100, true}, {102, false}, {105, true}, {107, false}, {109, true}, {110, false}, {200, false}} {
		require.Equal(t, c.sees, snap.sees(c.xid), "xid %d", c.xid)
	}
	empty, err := parseSnapshot("5:5:")
	require.NoError(t, err)
	require.True(t, empty.sees(4))
	require.False(t, empty.sees(5))
	for _, bad := range []string{"", "1:2", "a:2:", "1:b:", "1:2:x", "1:2:3:4"} {
		_, err := parseSnapshot(bad)
		require.Error(t, err, bad)
	}
}

// TestSchemasCompileOncePerContent: a policy change that leaves a schema
// alone does not compile it again.
func TestSchemasCompileOncePerContent(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mk := e.boot.ManagementKey
	schema := map[string]any{"type": "object", "properties": map[string]any{"to": map[string]any{"type": "string"}}}
	e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk, map[string]any{"name": "a", "annotations_acknowledged": true, "parameter_schema": schema})
	e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk, map[string]any{"name": "b", "annotations_acknowledged": true, "parameter_schema": schema})
	_, err := e.srv.policies.Get(context.Background(), e.boot.OrgID)
	require.NoError(t, err)
	compiled := e.srv.policies.schemaCompiles.Load()

	e.want(http.StatusCreated, http.MethodPost, "/v1/rules", mk, map[string]any{"tool": "a", "permission": "allowed"})
	require.Equal(t, compiled, e.srv.policies.schemaCompiles.Load(), "a rule change compiled a schema")

	e.want(http.StatusOK, http.MethodPatch, "/v1/tools/b", mk, map[string]any{"parameter_schema": map[string]any{"type": "object"}})
	require.Equal(t, compiled+1, e.srv.policies.schemaCompiles.Load(), "only the changed schema compiles")
}

// TestToolSchemaLimits: a schema whose compilation, or validation against
// it, would be expensive is refused when it is written, with a 422 naming
// the limit.
func TestToolSchemaLimits(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mk := e.boot.ManagementKey
	nested := func(n int) string {
		return strings.Repeat(`{"not":`, n) + `{}` + strings.Repeat(`}`, n)
	}
	wide := func(n int) string {
		var b strings.Builder
		b.WriteString(`{"properties":{`)
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `"p%d":{}`, i)
		}
		b.WriteString(`}}`)
		return b.String()
	}
	// Definitions each referring n times to the one before: a small text
	// that amounts to n^depth subschemas.
	fanOut := func(depth, n int) string {
		var b strings.Builder
		b.WriteString(`{"$defs":{"d0":{"type":"string"}`)
		for i := 1; i <= depth; i++ {
			refs := strings.TrimSuffix(strings.Repeat(fmt.Sprintf(`{"$ref":"#/$defs/d%d"},`, i-1), n), ",")
			fmt.Fprintf(&b, `,"d%d":{"allOf":[%s]}`, i, refs)
		}
		fmt.Fprintf(&b, `},"$ref":"#/$defs/d%d"}`, depth)
		return b.String()
	}
	body := func(name, schema string) string {
		return fmt.Sprintf(`{"name":%q,"annotations_acknowledged":true,"parameter_schema":%s}`, name, schema)
	}
	for _, c := range []struct {
		name, schema, detail string
	}{
		{"nested deeper than 64", nested(64), "nests deeper than 64"},
		{"more than 1000 objects", wide(999), "more than 1000 objects and arrays"},
		{"3000 nested not", nested(3000), "nests deeper than 64"},
		{"references that multiply", fanOut(22, 2), "expands to more than 10000 subschemas"},
		{"a reference cycle", `{"$defs":{"node":{"properties":{"next":{"$ref":"#/$defs/node"}}}},"$ref":"#/$defs/node"}`, "refers to itself"},
		{"$dynamicRef", `{"$dynamicAnchor":"n","properties":{"next":{"$dynamicRef":"#n"}}}`, "$dynamicRef"},
	} {
		p := requireProblem(t, e.want(http.StatusUnprocessableEntity, http.MethodPost, "/v1/tools", mk, body("t", c.schema)),
			CodeValidationFailed, "body.parameter_schema")
		require.Contains(t, p.Detail, c.detail, c.name)
	}
	// At the limits a schema is accepted, on create and on update.
	tool := decodeAs[Tool](t, e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk, body("deep", nested(63))))
	e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk, body("wide", wide(998)))
	e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk, body("shared", fanOut(10, 2))) // 4,094 subschemas
	p := requireProblem(t, e.want(http.StatusUnprocessableEntity, http.MethodPatch, "/v1/tools/"+tool.ID, mk,
		`{"parameter_schema":`+nested(100)+`}`), CodeValidationFailed, "body.parameter_schema")
	require.Contains(t, p.Detail, "nests deeper than 64")
}
