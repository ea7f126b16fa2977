package api

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestResourceCRUD(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mk, org := e.boot.ManagementKey, e.boot.OrgID

	created := decodeAs[Resource](t, e.want(http.StatusCreated, http.MethodPost, "/v1/resources", mk,
		map[string]any{"name": "billing-db", "description": "the billing database"}))
	require.Regexp(t, `^res_`, created.ID)
	require.Equal(t, "the billing database", created.Description)
	requireProblem(t, e.want(http.StatusConflict, http.MethodPost, "/v1/resources", mk, map[string]any{"name": "billing-db"}), CodeConflict, "")

	got := decodeAs[Resource](t, e.want(http.StatusOK, http.MethodGet, "/v1/resources/billing-db", mk, nil))
	require.Equal(t, created, got)

	// Only the fields present change.
	updated := decodeAs[Resource](t, e.want(http.StatusOK, http.MethodPatch, "/v1/resources/"+created.ID, mk,
		map[string]any{"description": "primary billing database"}))
	require.Equal(t, "billing-db", updated.Name)
	require.Equal(t, "primary billing database", updated.Description)
	updated = decodeAs[Resource](t, e.want(http.StatusOK, http.MethodPatch, "/v1/resources/"+created.ID, mk,
		map[string]any{"name": "billing"}))
	require.Equal(t, "billing", updated.Name)
	require.Equal(t, "primary billing database", updated.Description)

	e.want(http.StatusNoContent, http.MethodDelete, "/v1/resources/billing", mk, nil)
	requireProblem(t, e.want(http.StatusNotFound, http.MethodGet, "/v1/resources/"+created.ID, mk, nil), CodeNotFound, "")

	require.Len(t, e.audits(org, kindResourceCreated, created.ID), 1)
	require.Len(t, e.audits(org, kindResourceUpdated, created.ID), 2)
	deleted := e.audits(org, kindResourceDeleted, created.ID)
	require.Len(t, deleted, 1)
	require.Equal(t, "billing", deleted[0].Details["name"])
}
