package main

import (
	"fmt"
	"strconv"
	"strings"

	"oakallow/api"
	"oakallow/api/ratelimit"
)

// loadLimits reads the rate limits and trusted proxies of serve.
func loadLimits() (api.LimitsConfig, error) {
	if err := checkRemovedVars(); err != nil {
		return api.LimitsConfig{}, err
	}
	var c api.LimitsConfig
	for _, f := range []struct {
		name, value string
		to          *ratelimit.Limit
	}{
		{"OAKALLOW_LIMIT_AUTH_FAILURES_PER_IP", getenv("OAKALLOW_LIMIT_AUTH_FAILURES_PER_IP"), &c.AuthFailuresPerIP},
		{"OAKALLOW_LIMIT_AUTH_FAILURES_PER_KEY", getenv("OAKALLOW_LIMIT_AUTH_FAILURES_PER_KEY"), &c.AuthFailuresPerKey},
		{"OAKALLOW_LIMIT_VERIFY_FAILURES_PER_IP", getenv("OAKALLOW_LIMIT_VERIFY_FAILURES_PER_IP"), &c.VerifyFailuresPerIP},
		{"OAKALLOW_LIMIT_VERIFY_FAILURES_PER_KEY", getenv("OAKALLOW_LIMIT_VERIFY_FAILURES_PER_KEY"), &c.VerifyFailuresPerKey},
		{"OAKALLOW_LIMIT_VERIFIES_PER_KEY", getenv("OAKALLOW_LIMIT_VERIFIES_PER_KEY"), &c.VerifiesPerKey},
		{"OAKALLOW_LIMIT_OAUTH_AUTHORIZE_PER_IP", getenv("OAKALLOW_LIMIT_OAUTH_AUTHORIZE_PER_IP"), &c.OAuthAuthorizePerIP},
		{"OAKALLOW_LIMIT_OAUTH_AUTHORIZE_ALL", getenv("OAKALLOW_LIMIT_OAUTH_AUTHORIZE_ALL"), &c.OAuthAuthorizeAll},
		{"OAKALLOW_LIMIT_PASSKEY_OPTIONS_PER_IP", getenv("OAKALLOW_LIMIT_PASSKEY_OPTIONS_PER_IP"), &c.PasskeyOptionsPerIP},
		{"OAKALLOW_LIMIT_PASSKEY_OPTIONS_ALL", getenv("OAKALLOW_LIMIT_PASSKEY_OPTIONS_ALL"), &c.PasskeyOptionsAll},
	} {
		l, err := ratelimit.ParseLimit(f.value)
		if err != nil {
			return api.LimitsConfig{}, fmt.Errorf("%s: %w", f.name, err)
		}
		*f.to = l
	}
	n, err := getenvInt("OAKALLOW_LIMIT_TRACKED_KEYS")
	if err != nil {
		return api.LimitsConfig{}, err
	}
	if n < ratelimit.MinTracked || n > ratelimit.MaxTracked {
		return api.LimitsConfig{}, fmt.Errorf("OAKALLOW_LIMIT_TRACKED_KEYS: must be between %d and %d", ratelimit.MinTracked, ratelimit.MaxTracked)
	}
	c.MaxTracked = n
	if c.TrustedProxies, err = api.ParseTrustedProxies(getenv("OAKALLOW_TRUSTED_PROXIES")); err != nil {
		return api.LimitsConfig{}, fmt.Errorf("OAKALLOW_TRUSTED_PROXIES: %w", err)
	}
	if err := c.Validate(); err != nil {
		return api.LimitsConfig{}, err
	}
	return c, nil
}

// loadOAuthRegistrationLimit reads the per-address bound on dynamic client
// registrations at the MCP connector's authorization server.
func loadOAuthRegistrationLimit() (ratelimit.Limit, error) {
	l, err := ratelimit.ParseLimit(getenv("OAKALLOW_LIMIT_OAUTH_REGISTRATIONS_PER_IP"))
	if err != nil {
		return ratelimit.Limit{}, fmt.Errorf("OAKALLOW_LIMIT_OAUTH_REGISTRATIONS_PER_IP: %w", err)
	}
	return l, nil
}

// loadDiscoveryCaps reads the auto-discovery caps new orgs start with.
func loadDiscoveryCaps() (api.DiscoveryCaps, error) {
	var caps api.DiscoveryCaps
	for _, f := range []struct {
		name, value string
		to          *int32
	}{
		{"OAKALLOW_AUTODISCOVERY_HOURLY_CAP", getenv("OAKALLOW_AUTODISCOVERY_HOURLY_CAP"), &caps.PerHour},
		{"OAKALLOW_AUTODISCOVERY_TOTAL_CAP", getenv("OAKALLOW_AUTODISCOVERY_TOTAL_CAP"), &caps.Total},
	} {
		n, err := strconv.Atoi(strings.TrimSpace(f.value))
		if err != nil || n < 0 || n > api.MaxDiscoveryCap {
			return api.DiscoveryCaps{}, fmt.Errorf("%s: want a whole number between 0 and %d, not %q", f.name, api.MaxDiscoveryCap, f.value)
		}
		*f.to = int32(n)
	}
	return caps, nil
}
