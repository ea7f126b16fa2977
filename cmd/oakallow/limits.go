package main

import (
	"fmt"

	"oakallow/api"
	"oakallow/api/ratelimit"
)

// loadLimits reads the rate limits and trusted proxies of serve.
func loadLimits() (api.LimitsConfig, error) {
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
