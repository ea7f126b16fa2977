package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Helpers and cross-cutting tests of the management API: access tiers, org
// isolation, pagination, bad input.

// mgmtProblem is a problem body with its field errors.
type mgmtProblem struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
	Errors []struct {
		Location string `json:"location"`
		Message  string `json:"message"`
	} `json:"errors"`
}

func decodeAs[T any](t testing.TB, raw []byte) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(raw, &v), string(raw))
	return v
}

// want sends a request, requires the status and returns the body.
func (e *testEnv) want(status int, method, path, key string, body any) []byte {
	e.t.Helper()
	got, raw := e.do(method, path, key, body)
	require.Equal(e.t, status, got, "%s %s: %s", method, path, raw)
	return raw
}

// requireProblem checks a problem's code and, when location is set, that one
// of its field errors names that location.
func requireProblem(t testing.TB, raw []byte, code, location string) mgmtProblem {
	t.Helper()
	p := decodeAs[mgmtProblem](t, raw)
	require.Equal(t, code, p.Code, string(raw))
	if location != "" {
		var locs []string
		for _, e := range p.Errors {
			locs = append(locs, e.Location)
		}
		require.Contains(t, locs, location, string(raw))
	}
	return p
}

// auditRow is one audit event as stored.
type auditRow struct {
	Kind, ActorKind, ActorID, Subject, Tool, Tenant string
	Details                                         map[string]any
}

// audits returns the org's audit events of kind about subject, oldest first.
func (e *testEnv) audits(orgID, kind, subject string) []auditRow {
	e.t.Helper()
	rows, err := e.st.Pool.Query(context.Background(),
		`SELECT kind, actor_kind, actor_id, subject, tool, tenant, details FROM audit_events
		 WHERE org_id = $1 AND kind = $2 AND subject = $3 ORDER BY seq`, orgID, kind, subject)
	require.NoError(e.t, err)
	defer rows.Close()
	var out []auditRow
	for rows.Next() {
		var r auditRow
		var details []byte
		require.NoError(e.t, rows.Scan(&r.Kind, &r.ActorKind, &r.ActorID, &r.Subject, &r.Tool, &r.Tenant, &details))
		require.NoError(e.t, json.Unmarshal(details, &r.Details))
		out = append(out, r)
	}
	require.NoError(e.t, rows.Err())
	return out
}

// managementKeyID is the id of the org's bootstrap management key.
func (e *testEnv) managementKeyID(orgID string) string {
	e.t.Helper()
	var id string
	require.NoError(e.t, e.st.Pool.QueryRow(context.Background(),
		`SELECT id FROM api_keys WHERE org_id = $1 AND tier = 'management'`, orgID).Scan(&id))
	return id
}

// changeListener receives the change notifications writers send, on its
// own connection, from the moment it is created.
type changeListener struct {
	t    testing.TB
	conn *pgx.Conn
}

func (e *testEnv) listenChanges() *changeListener {
	e.t.Helper()
	ctx := context.Background()
	c, err := e.st.Pool.Acquire(ctx)
	require.NoError(e.t, err)
	conn := c.Hijack()
	e.t.Cleanup(func() { _ = conn.Close(context.Background()) })
	_, err = conn.Exec(ctx, "LISTEN "+changesChannel)
	require.NoError(e.t, err)
	return &changeListener{t: e.t, conn: conn}
}

// expect requires that the next notification, within 2 s, is payload. A
// policy change's payload names its transaction ("policy:<org>:<xid>"),
// which is left out of the comparison.
func (l *changeListener) expect(payload, after string) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, err := l.conn.WaitForNotification(ctx)
	require.NoError(l.t, err, "no change notification after %s", after)
	got := n.Payload
	if org, ok := strings.CutPrefix(got, "policy:"); ok {
		org, xid, _ := strings.Cut(org, ":")
		require.Regexp(l.t, `^[0-9]+$`, xid, "transaction id of %q", got)
		got = "policy:" + org
	}
	require.Equal(l.t, payload, got, after)
}

// secondOrg bootstraps another team and org on the same database and waits
// until the server has learned its keys.
func (e *testEnv) secondOrg() BootstrapResult {
	e.t.Helper()
	boot, err := Bootstrap(context.Background(), e.st, BootstrapInput{TeamName: "Other", OwnerEmail: "other@example.com",
		OwnerName: "Other", OrgName: "other-app"}, time.Now())
	require.NoError(e.t, err)
	require.Eventually(e.t, func() bool {
		status, _ := e.do(http.MethodGet, "/v1/settings", boot.ManagementKey, nil)
		return status == http.StatusOK
	}, hangDeadline, 10*time.Millisecond, "the server never learned the second org's keys")
	return boot
}

func TestManageAccessTiers(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mk, sk := e.boot.ManagementKey, e.boot.StandardKey
	tool := decodeAs[Tool](t, e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk,
		map[string]any{"name": "lookup", "annotations_acknowledged": true}))
	tenant := decodeAs[Tenant](t, e.want(http.StatusCreated, http.MethodPost, "/v1/tenants", mk, map[string]any{"name": "t1"}))
	cat := decodeAs[Category](t, e.want(http.StatusCreated, http.MethodPost, "/v1/categories", mk, map[string]any{"name": "c1"}))
	res := decodeAs[Resource](t, e.want(http.StatusCreated, http.MethodPost, "/v1/resources", mk, map[string]any{"name": "r1"}))
	rule := decodeAs[Rule](t, e.want(http.StatusCreated, http.MethodPost, "/v1/rules", mk,
		map[string]any{"tool": "lookup", "permission": "allowed"}))

	reads := []string{
		"/v1/tools", "/v1/tools/" + tool.ID, "/v1/tools/lookup", "/v1/tenants", "/v1/tenants/" + tenant.ID,
		"/v1/categories", "/v1/categories/" + cat.ID, "/v1/resources", "/v1/resources/" + res.ID,
		"/v1/rules", "/v1/rules/" + rule.ID, "/v1/settings",
	}
	for _, path := range reads {
		t.Run("standard key reads "+path, func(t *testing.T) {
			status, raw := e.do(http.MethodGet, path, sk, nil)
			require.Equal(t, http.StatusOK, status, string(raw))
		})
		t.Run("no key reads "+path, func(t *testing.T) {
			status, raw := e.do(http.MethodGet, path, "", nil)
			require.Equal(t, http.StatusUnauthorized, status, string(raw))
			require.Equal(t, CodeInvalidKey, problemCode(t, raw))
		})
	}

	writes := []struct {
		name, method, path string
		body               any
	}{
		{"create tool", http.MethodPost, "/v1/tools", map[string]any{"name": "x", "annotations_acknowledged": true}},
		{"update tool", http.MethodPatch, "/v1/tools/" + tool.ID, map[string]any{"approved": true}},
		{"activate tool", http.MethodPost, "/v1/tools/" + tool.ID + "/activate", nil},
		{"delete tool", http.MethodDelete, "/v1/tools/" + tool.ID, nil},
		{"create tenant", http.MethodPost, "/v1/tenants", map[string]any{"name": "x"}},
		{"update tenant", http.MethodPatch, "/v1/tenants/" + tenant.ID, map[string]any{"name": "y"}},
		{"delete tenant", http.MethodDelete, "/v1/tenants/" + tenant.ID, nil},
		{"create category", http.MethodPost, "/v1/categories", map[string]any{"name": "x"}},
		{"update category", http.MethodPatch, "/v1/categories/" + cat.ID, map[string]any{"name": "y"}},
		{"delete category", http.MethodDelete, "/v1/categories/" + cat.ID, nil},
		{"create resource", http.MethodPost, "/v1/resources", map[string]any{"name": "x"}},
		{"update resource", http.MethodPatch, "/v1/resources/" + res.ID, map[string]any{"name": "y"}},
		{"delete resource", http.MethodDelete, "/v1/resources/" + res.ID, nil},
		{"create rule", http.MethodPost, "/v1/rules", map[string]any{"permission": "disabled"}},
		{"update rule", http.MethodPatch, "/v1/rules/" + rule.ID, map[string]any{"permission": "disabled"}},
		{"delete rule", http.MethodDelete, "/v1/rules/" + rule.ID, nil},
		{"update settings", http.MethodPatch, "/v1/settings", map[string]any{"management_keys_may_decide": true}},
	}
	for _, w := range writes {
		t.Run("standard key "+w.name, func(t *testing.T) {
			status, raw := e.do(w.method, w.path, sk, w.body)
			require.Equal(t, http.StatusForbidden, status, string(raw))
			require.Equal(t, CodeWrongKeyTier, problemCode(t, raw))
		})
		t.Run("no key "+w.name, func(t *testing.T) {
			status, raw := e.do(w.method, w.path, "", w.body)
			require.Equal(t, http.StatusUnauthorized, status, string(raw))
			require.Equal(t, CodeInvalidKey, problemCode(t, raw))
		})
	}

	// Nothing a refused write asked for happened.
	got := decodeAs[Tool](t, e.want(http.StatusOK, http.MethodGet, "/v1/tools/"+tool.ID, sk, nil))
	require.False(t, got.Approved)
	settings := decodeAs[OrgSettings](t, e.want(http.StatusOK, http.MethodGet, "/v1/settings", sk, nil))
	require.False(t, settings.ManagementKeysMayDecide)
}

func TestManageOrgIsolation(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mk := e.boot.ManagementKey
	tool := decodeAs[Tool](t, e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk,
		map[string]any{"name": "wire_money", "annotations_acknowledged": true}))
	tenant := decodeAs[Tenant](t, e.want(http.StatusCreated, http.MethodPost, "/v1/tenants", mk, map[string]any{"name": "acme"}))
	rule := decodeAs[Rule](t, e.want(http.StatusCreated, http.MethodPost, "/v1/rules", mk,
		map[string]any{"tool": tool.ID, "permission": "allowed"}))

	other := e.secondOrg()
	for _, key := range []string{other.ManagementKey, other.StandardKey} {
		for _, path := range []string{"/v1/tools/" + tool.ID, "/v1/tools/wire_money", "/v1/tenants/" + tenant.ID,
			"/v1/rules/" + rule.ID} {
			status, raw := e.do(http.MethodGet, path, key, nil)
			require.Equal(t, http.StatusNotFound, status, "%s: %s", path, raw)
			require.Equal(t, CodeNotFound, problemCode(t, raw))
		}
		list := decodeAs[struct{ Items []Tool }](t, e.want(http.StatusOK, http.MethodGet, "/v1/tools", key, nil))
		require.Empty(t, list.Items)
		rules := decodeAs[struct{ Items []Rule }](t, e.want(http.StatusOK, http.MethodGet, "/v1/rules", key, nil))
		require.Empty(t, rules.Items)
	}

	// Writes cannot reach the first org's objects either.
	okey := other.ManagementKey
	requireProblem(t, e.want(http.StatusNotFound, http.MethodPatch, "/v1/tools/"+tool.ID, okey, map[string]any{"enabled": false}), CodeNotFound, "")
	requireProblem(t, e.want(http.StatusNotFound, http.MethodDelete, "/v1/tools/"+tool.ID, okey, nil), CodeNotFound, "")
	requireProblem(t, e.want(http.StatusNotFound, http.MethodPost, "/v1/tools/"+tool.ID+"/activate", okey, nil), CodeNotFound, "")
	requireProblem(t, e.want(http.StatusNotFound, http.MethodPatch, "/v1/rules/"+rule.ID, okey, map[string]any{"permission": "disabled"}), CodeNotFound, "")
	requireProblem(t, e.want(http.StatusNotFound, http.MethodDelete, "/v1/rules/"+rule.ID, okey, nil), CodeNotFound, "")
	requireProblem(t, e.want(http.StatusNotFound, http.MethodDelete, "/v1/tenants/"+tenant.ID, okey, nil), CodeNotFound, "")
	// …nor use them as references.
	requireProblem(t, e.want(http.StatusUnprocessableEntity, http.MethodPost, "/v1/rules", okey,
		map[string]any{"tool": tool.ID, "permission": "allowed"}), CodeValidationFailed, "body.tool")
	requireProblem(t, e.want(http.StatusUnprocessableEntity, http.MethodPost, "/v1/rules", okey,
		map[string]any{"tenant": tenant.ID, "permission": "allowed"}), CodeValidationFailed, "body.tenant")

	// The second org may use the same names: names are unique per org only.
	e.want(http.StatusCreated, http.MethodPost, "/v1/tools", okey, map[string]any{"name": "wire_money", "annotations_acknowledged": true})

	// The first org's objects are untouched.
	got := decodeAs[Tool](t, e.want(http.StatusOK, http.MethodGet, "/v1/tools/"+tool.ID, mk, nil))
	require.True(t, got.Enabled)
	e.want(http.StatusOK, http.MethodGet, "/v1/rules/"+rule.ID, mk, nil)
}

// TestManageChangesAreAnnounced shows that every catalog write announces a
// policy change for the org, so every replica recompiles it.
func TestManageChangesAreAnnounced(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mk := e.boot.ManagementKey
	l := e.listenChanges()
	want := "policy:" + e.boot.OrgID

	var ruleID string
	steps := []struct {
		name, method, path string
		body               any
		status             int
	}{
		{"create tenant", http.MethodPost, "/v1/tenants", map[string]any{"name": "t"}, 201},
		{"rename tenant", http.MethodPatch, "/v1/tenants/t", map[string]any{"name": "t2"}, 200},
		{"create category", http.MethodPost, "/v1/categories", map[string]any{"name": "c"}, 201},
		{"update category", http.MethodPatch, "/v1/categories/c", map[string]any{"default_permission": "allowed"}, 200},
		{"create resource", http.MethodPost, "/v1/resources", map[string]any{"name": "r"}, 201},
		{"rename resource", http.MethodPatch, "/v1/resources/r", map[string]any{"name": "r2"}, 200},
		{"create tool", http.MethodPost, "/v1/tools", map[string]any{"name": "x", "annotations_acknowledged": true, "status": "draft"}, 201},
		{"update tool", http.MethodPatch, "/v1/tools/x", map[string]any{"category": "c"}, 200},
		{"activate tool", http.MethodPost, "/v1/tools/x/activate", nil, 200},
		{"create rule", http.MethodPost, "/v1/rules", map[string]any{"tenant": "t2", "resource": "r2", "tool": "x", "permission": "disabled"}, 201},
		{"update rule", http.MethodPatch, "/v1/rules/{rule}", map[string]any{"permission": "allowed"}, 200},
		{"delete rule", http.MethodDelete, "/v1/rules/{rule}", nil, 204},
		{"delete tool", http.MethodDelete, "/v1/tools/x", nil, 204},
		{"delete resource", http.MethodDelete, "/v1/resources/r2", nil, 204},
		{"delete category", http.MethodDelete, "/v1/categories/c", nil, 204},
		{"delete tenant", http.MethodDelete, "/v1/tenants/t2", nil, 204},
	}
	for _, s := range steps {
		raw := e.want(s.status, s.method, strings.ReplaceAll(s.path, "{rule}", ruleID), mk, s.body)
		if s.name == "create rule" {
			ruleID = decodeAs[Rule](t, raw).ID
		}
		l.expect(want, s.name)
	}
}

// doHeaders is e.do with request headers, returning the answer's headers.
func (e *testEnv) doHeaders(method, path, key string, headers map[string]string, body any) (int, http.Header, []byte) {
	e.t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(e.t, err)
	req, err := http.NewRequest(method, e.base+path, bytes.NewReader(raw))
	require.NoError(e.t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", key)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return resp.StatusCode, resp.Header, out
}

// TestManageIdempotencyKey shows that a retried management write with the
// same Idempotency-Key gets the first answer and writes nothing again.
func TestManageIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mk, org := e.boot.ManagementKey, e.boot.OrgID
	body := map[string]any{"name": "retry_me", "annotations_acknowledged": true}
	hdr := map[string]string{"Idempotency-Key": "create-retry-me-1"}

	status, h, raw := e.doHeaders(http.MethodPost, "/v1/tools", mk, hdr, body)
	require.Equal(t, http.StatusCreated, status, string(raw))
	require.Empty(t, h.Get("Idempotent-Replayed"))
	first := decodeAs[Tool](t, raw)

	status, h, raw = e.doHeaders(http.MethodPost, "/v1/tools", mk, hdr, body)
	require.Equal(t, http.StatusCreated, status, string(raw))
	require.Equal(t, "true", h.Get("Idempotent-Replayed"))
	require.Equal(t, first, decodeAs[Tool](t, raw))
	require.Len(t, e.audits(org, kindToolCreated, first.ID), 1)

	// The same key for another request is refused; without a key the
	// duplicate name conflicts as usual.
	status, _, raw = e.doHeaders(http.MethodPost, "/v1/tools", mk, hdr, map[string]any{"name": "other", "annotations_acknowledged": true})
	require.Equal(t, http.StatusUnprocessableEntity, status, string(raw))
	require.Equal(t, CodeIdempotencyKeyReused, problemCode(t, raw))
	requireProblem(t, e.want(http.StatusConflict, http.MethodPost, "/v1/tools", mk, body), CodeConflict, "")

	// Deletes replay too: the retry answers 204, not 404.
	del := map[string]string{"Idempotency-Key": "delete-retry-me-1"}
	for i, want := range []string{"", "true"} {
		status, h, raw = e.doHeaders(http.MethodDelete, "/v1/tools/"+first.ID, mk, del, nil)
		require.Equal(t, http.StatusNoContent, status, "attempt %d: %s", i, raw)
		require.Equal(t, want, h.Get("Idempotent-Replayed"))
	}
	require.Len(t, e.audits(org, kindToolDeleted, first.ID), 1)
}

func TestManagePagination(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mk := e.boot.ManagementKey

	kinds := []struct {
		path string
		body func(i int) map[string]any
	}{
		{"/v1/tenants", func(i int) map[string]any { return map[string]any{"name": fmt.Sprintf("tenant-%d", i)} }},
		{"/v1/categories", func(i int) map[string]any { return map[string]any{"name": fmt.Sprintf("cat-%d", i)} }},
		{"/v1/resources", func(i int) map[string]any { return map[string]any{"name": fmt.Sprintf("res-%d", i)} }},
		{"/v1/tools", func(i int) map[string]any {
			return map[string]any{"name": fmt.Sprintf("tool-%d", i), "annotations_acknowledged": true}
		}},
		{"/v1/rules", func(i int) map[string]any {
			return map[string]any{"method": fmt.Sprintf("m%d", i), "permission": "allowed"}
		}},
	}
	type item struct {
		ID string `json:"id"`
	}
	type pageBody struct {
		Items      []item  `json:"items"`
		NextCursor *string `json:"next_cursor"`
	}
	for _, k := range kinds {
		t.Run(strings.TrimPrefix(k.path, "/v1/"), func(t *testing.T) {
			created := map[string]bool{}
			for i := range 5 {
				it := decodeAs[item](t, e.want(http.StatusCreated, http.MethodPost, k.path, mk, k.body(i)))
				created[it.ID] = true
			}
			seen := map[string]bool{}
			cursor, pages := "", 0
			for {
				path := k.path + "?limit=2"
				if cursor != "" {
					path += "&cursor=" + cursor
				}
				p := decodeAs[pageBody](t, e.want(http.StatusOK, http.MethodGet, path, e.boot.StandardKey, nil))
				pages++
				require.LessOrEqual(t, len(p.Items), 2)
				for _, it := range p.Items {
					require.False(t, seen[it.ID], "item %s on two pages", it.ID)
					seen[it.ID] = true
				}
				if p.NextCursor == nil {
					break
				}
				require.Len(t, p.Items, 2, "a page before the last is full")
				cursor = *p.NextCursor
				require.Less(t, pages, 10, "pagination does not end")
			}
			require.Equal(t, 3, pages)
			require.Equal(t, created, seen)
		})
	}

	t.Run("default and bounds", func(t *testing.T) {
		p := decodeAs[pageBody](t, e.want(http.StatusOK, http.MethodGet, "/v1/tenants", mk, nil))
		require.Len(t, p.Items, 5)
		require.Nil(t, p.NextCursor)
		requireProblem(t, e.want(http.StatusUnprocessableEntity, http.MethodGet, "/v1/tenants?limit=201", mk, nil), CodeValidationFailed, "query.limit")
		requireProblem(t, e.want(http.StatusUnprocessableEntity, http.MethodGet, "/v1/tenants?limit=0", mk, nil), CodeValidationFailed, "query.limit")
	})

	t.Run("foreign cursors are refused", func(t *testing.T) {
		p := decodeAs[pageBody](t, e.want(http.StatusOK, http.MethodGet, "/v1/tenants?limit=1", mk, nil))
		require.NotNil(t, p.NextCursor)
		for name, c := range map[string]string{
			"another list's cursor": *p.NextCursor,
			"not base64":            "!!!",
			"forged":                "dG9vbDo", // base64url("tool:")
		} {
			status, raw := e.do(http.MethodGet, "/v1/tools?cursor="+c, mk, nil)
			require.Equal(t, http.StatusBadRequest, status, "%s: %s", name, raw)
			require.Equal(t, CodeBadRequest, problemCode(t, raw))
		}
	})
}

func TestManageBadInput(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mk := e.boot.ManagementKey
	long := strings.Repeat("x", 201)
	cases := []struct {
		name, method, path string
		body               any
		status             int
		code, location     string
	}{
		{"malformed JSON", http.MethodPost, "/v1/tools", `{"name": "a",`, 400, CodeBadRequest, ""},
		{"JSON of the wrong type", http.MethodPost, "/v1/tenants", `["a"]`, 422, CodeValidationFailed, ""},
		{"unknown field", http.MethodPost, "/v1/tenants", map[string]any{"name": "a", "colour": "red"}, 422, CodeValidationFailed, "body.colour"},
		{"unknown field in patch", http.MethodPatch, "/v1/settings", map[string]any{"webhook_secret": "s"}, 422, CodeValidationFailed, "body.webhook_secret"},
		{"missing name", http.MethodPost, "/v1/resources", map[string]any{}, 422, CodeValidationFailed, "body"},
		{"empty name", http.MethodPost, "/v1/resources", map[string]any{"name": ""}, 422, CodeValidationFailed, "body.name"},
		{"tenant name too long", http.MethodPost, "/v1/tenants", map[string]any{"name": long}, 422, CodeValidationFailed, "body.name"},
		{"tool name too long", http.MethodPost, "/v1/tools", map[string]any{"name": long, "annotations_acknowledged": true}, 422, CodeValidationFailed, "body.name"},
		{"control character in name", http.MethodPost, "/v1/categories", map[string]any{"name": "a\nb"}, 422, CodeValidationFailed, "body.name"},
		{"description too long", http.MethodPost, "/v1/resources", map[string]any{"name": "r", "description": strings.Repeat("d", 2001)}, 422, CodeValidationFailed, "body.description"},
		{"method too long", http.MethodPost, "/v1/rules", map[string]any{"method": long, "permission": "allowed"}, 422, CodeValidationFailed, "body.method"},
		{"unknown permission", http.MethodPost, "/v1/rules", map[string]any{"permission": "maybe"}, 422, CodeValidationFailed, "body.permission"},
		{"unknown default permission", http.MethodPost, "/v1/categories", map[string]any{"name": "c", "default_permission": "sometimes"}, 422, CodeValidationFailed, "body.default_permission"},
		{"unknown risk level", http.MethodPost, "/v1/tools", map[string]any{"name": "t", "annotations_acknowledged": true, "risk_level": "extreme"}, 422, CodeValidationFailed, "body.risk_level"},
		{"wrong type", http.MethodPatch, "/v1/settings", map[string]any{"scrub_parameters": "yes"}, 422, CodeValidationFailed, "body.scrub_parameters"},
		{"negative cap", http.MethodPatch, "/v1/settings", map[string]any{"autodiscovery_total_cap": -1}, 422, CodeValidationFailed, "body.autodiscovery_total_cap"},
		{"unknown tool status filter", http.MethodGet, "/v1/tools?status=retired", nil, 422, CodeValidationFailed, "query.status"},
		{"over-long path id", http.MethodGet, "/v1/tools/" + long, nil, 422, CodeValidationFailed, "path.id"},
		{"body over 64 KiB", http.MethodPost, "/v1/resources", map[string]any{"name": "r", "description": strings.Repeat("d", 70<<10)}, 413, CodeBodyTooLarge, ""},
		// PostgreSQL cannot store NUL characters or invalid UTF-8: refused
		// before they reach it, never a 500.
		{"NUL in a description", http.MethodPost, "/v1/resources", map[string]any{"name": "r", "description": "a\x00b"}, 422, CodeValidationFailed, ""},
		{"NUL in a reference", http.MethodPost, "/v1/rules", map[string]any{"tool": "a\x00b", "permission": "allowed"}, 422, CodeValidationFailed, ""},
		{"NUL in a method", http.MethodPost, "/v1/rules", map[string]any{"method": "a\x00b", "permission": "allowed"}, 422, CodeValidationFailed, "body.method"},
		{"NUL in a schema", http.MethodPost, "/v1/tools", `{"name":"t","annotations_acknowledged":true,"parameter_schema":{"description":"a\u0000b"}}`, 422, CodeValidationFailed, ""},
		{"NUL in a patch", http.MethodPatch, "/v1/settings", map[string]any{"name": "a\x00b"}, 422, CodeValidationFailed, "body.name"},
		{"NUL in a path id", http.MethodGet, "/v1/tools/a%00b", nil, 404, CodeNotFound, ""},
		{"invalid UTF-8 in a path id", http.MethodGet, "/v1/tenants/%FF%FE", nil, 404, CodeNotFound, ""},
		{"invalid UTF-8 in a patched id", http.MethodPatch, "/v1/tools/%FF", map[string]any{"enabled": false}, 404, CodeNotFound, ""},
		{"invalid UTF-8 in a deleted id", http.MethodDelete, "/v1/rules/%FF", nil, 404, CodeNotFound, ""},
		{"invalid UTF-8 in a cursor", http.MethodGet, "/v1/tools?cursor=dG9vbDr__w", nil, 400, CodeBadRequest, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, raw := e.do(c.method, c.path, mk, c.body)
			require.Equal(t, c.status, status, string(raw))
			requireProblem(t, raw, c.code, c.location)
		})
	}
}
