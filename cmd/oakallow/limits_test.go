package main

import (
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/api"
	"oakallow/api/ratelimit"
)

// TestLimitDefaultsAreTheServers: the documented defaults of the
// OAKALLOW_LIMIT_* variables are the API server's own defaults.
func TestLimitDefaultsAreTheServers(t *testing.T) {
	for _, v := range envVars {
		t.Setenv(v.Name, v.Default)
	}
	got, err := loadLimits()
	require.NoError(t, err)
	var want api.LimitsConfig
	require.NoError(t, want.Validate())
	require.Equal(t, want, got)
}

func TestLimitsFromEnvironment(t *testing.T) {
	t.Setenv("OAKALLOW_LIMIT_VERIFIES_PER_KEY", "off")
	t.Setenv("OAKALLOW_LIMIT_AUTH_FAILURES_PER_IP", "5/10s")
	t.Setenv("OAKALLOW_TRUSTED_PROXIES", "10.0.0.0/8,192.0.2.1")
	t.Setenv("OAKALLOW_LIMIT_PASSKEY_OPTIONS_PER_IP", "9/5m")
	t.Setenv("OAKALLOW_LIMIT_PASSKEY_OPTIONS_ALL", "off")
	got, err := loadLimits()
	require.NoError(t, err)
	require.Equal(t, ratelimit.Limit{N: 9, Per: 5 * time.Minute}, got.PasskeyOptionsPerIP)
	require.Equal(t, ratelimit.Limit{Off: true}, got.PasskeyOptionsAll)
	require.Equal(t, ratelimit.Limit{Off: true}, got.VerifiesPerKey)
	require.Equal(t, ratelimit.Limit{N: 5, Per: 10 * time.Second}, got.AuthFailuresPerIP)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32")}, got.TrustedProxies)

	for name, bad := range map[string]string{
		"OAKALLOW_LIMIT_VERIFY_FAILURES_PER_KEY": "many",
		"OAKALLOW_LIMIT_TRACKED_KEYS":            "10",
		"OAKALLOW_TRUSTED_PROXIES":               "proxy.internal",
		"OAKALLOW_LIMIT_PASSKEY_OPTIONS_PER_IP":  "0/1m",
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, bad)
			_, err := loadLimits()
			require.ErrorContains(t, err, name[len("OAKALLOW_"):])
		})
	}
}

// TestRemovedPasskeySignInLimitStopsServe: the PostgreSQL-backed limit on
// passkey sign-in starts was folded into the in-memory passkey options
// limits. Its variable, still set, is neither read nor silently ignored:
// serve refuses to start and names what replaced it.
func TestRemovedPasskeySignInLimitStopsServe(t *testing.T) {
	for _, v := range envVars {
		t.Setenv(v.Name, v.Default)
	}
	_, err := loadLimits()
	require.NoError(t, err, "unset, nothing is said")
	for _, val := range []string{"60/15m", "off", "", "lots"} {
		t.Setenv("OAKALLOW_LIMIT_PASSKEY_SIGN_INS_PER_IP", val)
		_, err := loadLimits()
		require.ErrorContains(t, err, "OAKALLOW_LIMIT_PASSKEY_SIGN_INS_PER_IP is no longer read", "%q", val)
		require.ErrorContains(t, err, "OAKALLOW_LIMIT_PASSKEY_OPTIONS_PER_IP", "%q", val)
		require.ErrorContains(t, err, "OAKALLOW_LIMIT_PASSKEY_OPTIONS_ALL", "%q", val)
	}
}

// TestRemovedVariablesAreGoneAndDocumented: a removed variable is not read
// any more, and docs/CONFIGURATION.md says what replaced it.
func TestRemovedVariablesAreGoneAndDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/CONFIGURATION.md")
	require.NoError(t, err)
	for _, r := range removedVars {
		for _, v := range envVars {
			require.NotEqual(t, r.Name, v.Name, "removed and still read")
		}
		require.Contains(t, string(doc), "`"+r.Name+"`", "docs/CONFIGURATION.md names the removed variable")
	}
}

func TestSignInAttemptLimitsFromEnvironment(t *testing.T) {
	t.Setenv("OAKALLOW_LIMIT_SIGN_IN_CODES_PER_ADDRESS", "3/1h")
	t.Setenv("OAKALLOW_LIMIT_SIGN_IN_CODES_PER_IP", "off")
	t.Setenv("OAKALLOW_LIMIT_SIGN_IN_CODE_FAILURES_PER_IP", "7/10m")
	t.Setenv("OAKALLOW_WEBAUTHN_CEREMONY_TTL", "2m")
	acc, _, _, err := loadAccounts()
	require.NoError(t, err)
	require.Equal(t, ratelimit.Limit{N: 3, Per: time.Hour}, acc.CodesPerAddress)
	require.Equal(t, ratelimit.Limit{Off: true}, acc.CodesPerIP)
	require.Equal(t, ratelimit.Limit{N: 7, Per: 10 * time.Minute}, acc.CodeFailuresPerIP)
	pk, err := passkeyConfig()
	require.NoError(t, err)
	require.Equal(t, 2*time.Minute, pk.CeremonyTTL)

	t.Setenv("OAKALLOW_LIMIT_SIGN_IN_CODE_FAILURES_PER_IP", "lots")
	_, _, _, err = loadAccounts()
	require.ErrorContains(t, err, "OAKALLOW_LIMIT_SIGN_IN_CODE_FAILURES_PER_IP")
	t.Setenv("OAKALLOW_WEBAUTHN_CEREMONY_TTL", "soon")
	_, err = passkeyConfig()
	require.ErrorContains(t, err, "OAKALLOW_WEBAUTHN_CEREMONY_TTL")
}

func TestOAuthRegistrationLimitAndDiscoveryCapsFromEnvironment(t *testing.T) {
	for _, v := range envVars {
		t.Setenv(v.Name, v.Default)
	}
	l, err := loadOAuthRegistrationLimit()
	require.NoError(t, err)
	require.Equal(t, ratelimit.Limit{N: 20, Per: time.Hour}, l, "the documented default is the authorization server's")
	caps, err := loadDiscoveryCaps()
	require.NoError(t, err)
	require.Equal(t, api.DefaultDiscoveryCaps, caps)

	t.Setenv("OAKALLOW_LIMIT_OAUTH_REGISTRATIONS_PER_IP", "off")
	l, err = loadOAuthRegistrationLimit()
	require.NoError(t, err)
	require.Equal(t, ratelimit.Limit{Off: true}, l)
	t.Setenv("OAKALLOW_LIMIT_OAUTH_REGISTRATIONS_PER_IP", "3/10m")
	l, err = loadOAuthRegistrationLimit()
	require.NoError(t, err)
	require.Equal(t, ratelimit.Limit{N: 3, Per: 10 * time.Minute}, l)
	t.Setenv("OAKALLOW_AUTODISCOVERY_HOURLY_CAP", "0")
	t.Setenv("OAKALLOW_AUTODISCOVERY_TOTAL_CAP", " 1000000 ")
	caps, err = loadDiscoveryCaps()
	require.NoError(t, err)
	require.Equal(t, api.DiscoveryCaps{PerHour: 0, Total: 1_000_000}, caps)

	for name, bad := range map[string]string{
		"OAKALLOW_LIMIT_OAUTH_REGISTRATIONS_PER_IP": "0/1h",
		"OAKALLOW_AUTODISCOVERY_HOURLY_CAP":         "-1",
		"OAKALLOW_AUTODISCOVERY_TOTAL_CAP":          "1000001",
	} {
		t.Run(name, func(t *testing.T) {
			for _, bad := range []string{bad, "lots", ""} {
				t.Setenv(name, bad)
				_, errL := loadOAuthRegistrationLimit()
				_, errC := loadDiscoveryCaps()
				require.ErrorContains(t, errors.Join(errL, errC), name, "%q", bad)
			}
		})
	}
}
