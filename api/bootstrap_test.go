package api

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/dev/devtest"
)

// TestFirstOwnerSignsUpWithTheBootstrapLink: a new installation's owner
// joins with the printed link and a mailed code, and bootstrap works once.
func TestFirstOwnerSignsUpWithTheBootstrapLink(t *testing.T) {
	t.Parallel()
	st := devtest.Store(t)
	first, err := BootstrapFirstTeam(context.Background(), st, FirstTeamInput{TeamName: "Acme", OwnerEmail: "ops@acme.example",
		OrgName: "production", PublicURL: "https://oakallow.example.com/"}, time.Now())
	require.NoError(t, err)
	_, err = BootstrapFirstTeam(context.Background(), st, FirstTeamInput{TeamName: "Evil", OwnerEmail: "evil@example.com",
		PublicURL: "https://oakallow.example.com"}, time.Now())
	require.ErrorIs(t, err, ErrAlreadyBootstrapped)

	m := startMailEnv(t, st, BootstrapResult{TeamID: first.TeamID, OrgID: first.OrgID, ManagementKey: first.ManagementKey,
		StandardKey: first.StandardKey}, AccountsConfig{}, nil)
	u, err := url.Parse(first.SignUpLink)
	require.NoError(t, err)
	require.Equal(t, "oakallow.example.com", u.Host)
	require.Equal(t, "/sign-up", u.Path)
	token := u.Query().Get("invitation")

	// Only the invited address can use the link.
	status, _, raw := m.send(http.MethodPost, "/v1/auth/email/start", "", nil, map[string]any{"email": "evil@example.com", "invitation": token})
	requireStatusCode(t, http.StatusForbidden, CodeInvalidInvitation, status, raw)

	att := m.start("ops@acme.example", token)
	si := m.signedIn(att, m.code("ops@acme.example", 1), map[string]any{"name": "Ops"})
	me := m.me(si.Token)
	require.Equal(t, []Membership{{TeamID: first.TeamID, TeamName: "Acme", Role: RoleOwner, Since: me.Memberships[0].Since,
		Orgs: []OrgRef{{ID: first.OrgID, Name: "production"}}}}, me.Memberships)

	// The keys printed with -org work; the owner's full session lists them.
	status, raw = m.do(http.MethodGet, "/v1/credits", first.StandardKey, nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	full := m.signIn(me.UserID, true).Token
	keys := sessionCall[listOutputBody[APIKey]](m.testEnv, http.StatusOK, http.MethodGet, "/v1/orgs/"+first.OrgID+"/keys", full, nil)
	require.Len(t, keys.Items, 2)
	require.Equal(t, bootstrapActor, keys.Items[0].CreatedBy)

	// The link works once.
	status, _, raw = m.send(http.MethodPost, "/v1/auth/email/start", "", nil, map[string]any{"email": "ops@acme.example", "invitation": token})
	requireStatusCode(t, http.StatusForbidden, CodeInvalidInvitation, status, raw)
}
