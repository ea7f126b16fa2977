package api

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCategoryCRUD(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mk, org := e.boot.ManagementKey, e.boot.OrgID

	created := decodeAs[Category](t, e.want(http.StatusCreated, http.MethodPost, "/v1/categories", mk,
		map[string]any{"name": "email", "default_permission": "requires_approval"}))
	require.Regexp(t, `^cat_`, created.ID)
	require.Equal(t, "requires_approval", *created.DefaultPermission)

	bare := decodeAs[Category](t, e.want(http.StatusCreated, http.MethodPost, "/v1/categories", mk, map[string]any{"name": "misc"}))
	require.Nil(t, bare.DefaultPermission)
	requireProblem(t, e.want(http.StatusConflict, http.MethodPost, "/v1/categories", mk, map[string]any{"name": "misc"}), CodeConflict, "")

	tool := decodeAs[Tool](t, e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk,
		map[string]any{"name": "send_email", "category": "email", "annotations_acknowledged": true}))
	require.Equal(t, "email", *tool.Category)

	cases := []struct {
		name  string
		patch map[string]any
		want  func(t *testing.T, c Category)
	}{
		{"rename keeps the default", map[string]any{"name": "mail"}, func(t *testing.T, c Category) {
			require.Equal(t, "mail", c.Name)
			require.Equal(t, "requires_approval", *c.DefaultPermission)
		}},
		{"change the default", map[string]any{"default_permission": "disabled"}, func(t *testing.T, c Category) {
			require.Equal(t, "mail", c.Name)
			require.Equal(t, "disabled", *c.DefaultPermission)
		}},
		{"null clears the default", map[string]any{"default_permission": nil}, func(t *testing.T, c Category) {
			require.Nil(t, c.DefaultPermission)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := decodeAs[Category](t, e.want(http.StatusOK, http.MethodPatch, "/v1/categories/"+created.ID, mk, c.patch))
			c.want(t, got)
			again := decodeAs[Category](t, e.want(http.StatusOK, http.MethodGet, "/v1/categories/"+created.ID, mk, nil))
			require.Equal(t, got, again)
		})
	}
	requireProblem(t, e.want(http.StatusConflict, http.MethodPatch, "/v1/categories/mail", mk, map[string]any{"name": "misc"}), CodeConflict, "")

	// The tool shows the renamed category; deleting it leaves the tool without one.
	got := decodeAs[Tool](t, e.want(http.StatusOK, http.MethodGet, "/v1/tools/send_email", mk, nil))
	require.Equal(t, "mail", *got.Category)
	e.want(http.StatusNoContent, http.MethodDelete, "/v1/categories/mail", mk, nil)
	got = decodeAs[Tool](t, e.want(http.StatusOK, http.MethodGet, "/v1/tools/send_email", mk, nil))
	require.Nil(t, got.Category)
	require.Nil(t, got.CategoryID)
	requireProblem(t, e.want(http.StatusNotFound, http.MethodGet, "/v1/categories/"+created.ID, mk, nil), CodeNotFound, "")

	require.Len(t, e.audits(org, kindCategoryCreated, created.ID), 1)
	updates := e.audits(org, kindCategoryUpdated, created.ID)
	require.Len(t, updates, 3)
	require.Equal(t, map[string]any{"default_permission": map[string]any{"from": "disabled", "to": nil}}, updates[2].Details["changed"])
	require.Len(t, e.audits(org, kindCategoryDeleted, created.ID), 1)
}
