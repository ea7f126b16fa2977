package api

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTenantCRUD(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mk, org := e.boot.ManagementKey, e.boot.OrgID

	created := decodeAs[Tenant](t, e.want(http.StatusCreated, http.MethodPost, "/v1/tenants", mk, map[string]any{"name": "acme"}))
	require.Regexp(t, `^ten_[2-7a-z]{26}$`, created.ID)
	require.Equal(t, "acme", created.Name)

	for _, ref := range []string{created.ID, "acme"} {
		got := decodeAs[Tenant](t, e.want(http.StatusOK, http.MethodGet, "/v1/tenants/"+ref, mk, nil))
		require.Equal(t, created.ID, got.ID)
	}

	requireProblem(t, e.want(http.StatusConflict, http.MethodPost, "/v1/tenants", mk, map[string]any{"name": "acme"}), CodeConflict, "")

	// A rule scoped to the tenant goes with it on delete.
	e.want(http.StatusCreated, http.MethodPost, "/v1/rules", mk, map[string]any{"tenant": "acme", "permission": "disabled"})

	updated := decodeAs[Tenant](t, e.want(http.StatusOK, http.MethodPatch, "/v1/tenants/acme", mk, map[string]any{"name": "acme-corp"}))
	require.Equal(t, created.ID, updated.ID)
	require.Equal(t, "acme-corp", updated.Name)
	requireProblem(t, e.want(http.StatusNotFound, http.MethodGet, "/v1/tenants/acme", mk, nil), CodeNotFound, "")

	// An empty patch changes nothing and records nothing.
	same := decodeAs[Tenant](t, e.want(http.StatusOK, http.MethodPatch, "/v1/tenants/"+created.ID, mk, map[string]any{}))
	require.Equal(t, updated.UpdatedAt, same.UpdatedAt)

	e.want(http.StatusNoContent, http.MethodDelete, "/v1/tenants/acme-corp", mk, nil)
	requireProblem(t, e.want(http.StatusNotFound, http.MethodGet, "/v1/tenants/"+created.ID, mk, nil), CodeNotFound, "")
	requireProblem(t, e.want(http.StatusNotFound, http.MethodDelete, "/v1/tenants/"+created.ID, mk, nil), CodeNotFound, "")
	rules := decodeAs[struct{ Items []Rule }](t, e.want(http.StatusOK, http.MethodGet, "/v1/rules", mk, nil))
	require.Empty(t, rules.Items)

	keyID := e.managementKeyID(org)
	for _, c := range []struct {
		kind    string
		details map[string]any
	}{
		{kindTenantCreated, map[string]any{"name": "acme"}},
		{kindTenantUpdated, map[string]any{"name": "acme-corp", "changed": map[string]any{"name": map[string]any{"from": "acme", "to": "acme-corp"}}}},
		{kindTenantDeleted, map[string]any{"name": "acme-corp", "rules_deleted": float64(1)}},
	} {
		rows := e.audits(org, c.kind, created.ID)
		require.Len(t, rows, 1, c.kind)
		require.Equal(t, "api_key", rows[0].ActorKind)
		require.Equal(t, keyID, rows[0].ActorID)
		require.Equal(t, c.details, rows[0].Details, c.kind)
	}
}
