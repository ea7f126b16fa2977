package main

import (
	"fmt"
	"strconv"

	"oakallow/api"
	"oakallow/api/mail"
	"oakallow/api/ratelimit"
)

// loadAccounts reads sign-up, session and mail settings of serve. Without
// OAKALLOW_SMTP_HOST the mailer is nil: e-mail sign-in answers 503.
func loadAccounts() (api.AccountsConfig, api.SessionsConfig, mail.Sender, error) {
	var acc api.AccountsConfig
	var ses api.SessionsConfig
	open, err := strconv.ParseBool(getenv("OAKALLOW_OPEN_SIGNUP"))
	if err != nil {
		return acc, ses, nil, fmt.Errorf("OAKALLOW_OPEN_SIGNUP: not a boolean")
	}
	acc.OpenSignUp = open
	for _, f := range []struct {
		name, value string
		to          *ratelimit.Limit
	}{
		{"OAKALLOW_LIMIT_SIGN_IN_CODES_PER_ADDRESS", getenv("OAKALLOW_LIMIT_SIGN_IN_CODES_PER_ADDRESS"), &acc.CodesPerAddress},
		{"OAKALLOW_LIMIT_SIGN_IN_CODES_PER_IP", getenv("OAKALLOW_LIMIT_SIGN_IN_CODES_PER_IP"), &acc.CodesPerIP},
		{"OAKALLOW_LIMIT_SIGN_IN_CODE_FAILURES_PER_IP", getenv("OAKALLOW_LIMIT_SIGN_IN_CODE_FAILURES_PER_IP"), &acc.CodeFailuresPerIP},
	} {
		if *f.to, err = ratelimit.ParseLimit(f.value); err != nil {
			return acc, ses, nil, fmt.Errorf("%s: %w", f.name, err)
		}
	}
	if ses.Idle, err = getenvDuration("OAKALLOW_SESSION_IDLE"); err != nil {
		return acc, ses, nil, err
	}
	if ses.Absolute, err = getenvDuration("OAKALLOW_SESSION_ABSOLUTE"); err != nil {
		return acc, ses, nil, err
	}
	if ses.CacheEntries, err = getenvInt("OAKALLOW_SESSION_CACHE_ENTRIES"); err != nil {
		return acc, ses, nil, err
	}
	if ses.CacheTTL, err = getenvDuration("OAKALLOW_SESSION_CACHE_TTL"); err != nil {
		return acc, ses, nil, err
	}
	host := getenv("OAKALLOW_SMTP_HOST")
	if host == "" {
		return acc, ses, nil, nil
	}
	port, err := getenvInt("OAKALLOW_SMTP_PORT")
	if err != nil {
		return acc, ses, nil, err
	}
	sender, err := mail.NewSMTP(mail.SMTPConfig{Host: host, Port: port, TLS: getenv("OAKALLOW_SMTP_TLS"),
		Username: getenv("OAKALLOW_SMTP_USERNAME"), Password: getenv("OAKALLOW_SMTP_PASSWORD"), From: getenv("OAKALLOW_SMTP_FROM")})
	if err != nil {
		return acc, ses, nil, fmt.Errorf("OAKALLOW_SMTP_*: %w", err)
	}
	return acc, ses, sender, nil
}
