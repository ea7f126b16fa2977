package api

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/api/ratelimit"
	"oakallow/dev/devtest"
	"oakallow/store"
)

func orgDiscoveryCaps(t *testing.T, st *store.Store, orgID string) DiscoveryCaps {
	t.Helper()
	o, err := st.GetOrg(context.Background(), orgID)
	require.NoError(t, err)
	return DiscoveryCaps{PerHour: o.AutodiscoveryHourlyCap, Total: o.AutodiscoveryTotalCap}
}

// TestNewOrgsStartWithTheConfiguredDiscoveryCaps: an org created through the
// API or by bootstrap starts with the installation's caps; without any, the
// column defaults, which are DefaultDiscoveryCaps.
func TestNewOrgsStartWithTheConfiguredDiscoveryCaps(t *testing.T) {
	t.Parallel()
	st, boot := bootstrappedStore(t)
	require.Equal(t, DefaultDiscoveryCaps, orgDiscoveryCaps(t, st, boot.OrgID))

	cfg := testConfig()
	cfg.DiscoveryCaps = &DiscoveryCaps{PerHour: 3, Total: 0}
	e := startEnvWith(t, cfg, Deps{Store: st}, boot)
	owner := e.signIn(boot.UserID, true).Token
	created := sessionCall[Org](e, http.StatusCreated, http.MethodPost, "/v1/orgs", owner, map[string]any{"name": "capped"})
	require.Equal(t, DiscoveryCaps{PerHour: 3, Total: 0}, orgDiscoveryCaps(t, st, created.ID))
	require.Equal(t, DefaultDiscoveryCaps, orgDiscoveryCaps(t, st, boot.OrgID), "existing orgs keep theirs")

	other := devtest.Store(t)
	res, err := Bootstrap(context.Background(), other, BootstrapInput{TeamName: "T", OwnerEmail: "o@example.com",
		OrgName: "o", DiscoveryCaps: &DiscoveryCaps{PerHour: 7, Total: 70}}, time.Now())
	require.NoError(t, err)
	require.Equal(t, DiscoveryCaps{PerHour: 7, Total: 70}, orgDiscoveryCaps(t, other, res.OrgID))

	third := devtest.Store(t)
	first, err := BootstrapFirstTeam(context.Background(), third, FirstTeamInput{TeamName: "T",
		OwnerEmail: "o@example.com", OrgName: "o", DiscoveryCaps: &DiscoveryCaps{PerHour: 1, Total: 2}}, time.Now())
	require.NoError(t, err)
	require.Equal(t, DiscoveryCaps{PerHour: 1, Total: 2}, orgDiscoveryCaps(t, third, first.OrgID))
}

func TestConfigRefusesBadDiscoveryCapsAndRegistrationLimit(t *testing.T) {
	t.Parallel()
	for _, caps := range []DiscoveryCaps{{PerHour: -1, Total: 5}, {PerHour: 5, Total: MaxDiscoveryCap + 1}} {
		cfg := testConfig()
		cfg.DiscoveryCaps = &caps
		require.ErrorContains(t, cfg.Validate(), "DiscoveryCaps")
	}
	cfg := testConfig()
	cfg.OAuthRegistrationsPerIP = ratelimit.Limit{N: 0, Per: time.Hour}
	require.ErrorContains(t, cfg.Validate(), "OAuthRegistrationsPerIP")
	cfg.OAuthRegistrationsPerIP = ratelimit.Limit{Off: true}
	require.NoError(t, cfg.Validate())
}
