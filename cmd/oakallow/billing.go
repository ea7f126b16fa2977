package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/user"
	"strconv"
	"time"

	"oakallow/api/billing"
)

// loadBilling reads the billing mode, packs, Stripe account and alert
// threshold (docs/CONFIGURATION.md "Billing").
func loadBilling() (billing.Config, error) {
	mode, err := billing.ParseMode(getenv("OAKALLOW_BILLING_MODE"))
	if err != nil {
		return billing.Config{}, fmt.Errorf("OAKALLOW_BILLING_MODE: %w", err)
	}
	cfg := billing.Config{Mode: mode, StripeSecretKey: getenv("STRIPE_SECRET_KEY"),
		StripeWebhookSecret: getenv("STRIPE_WEBHOOK_SECRET"), StripeAPIURL: getenv("STRIPE_API_URL")}
	if mode == billing.ModeStripe {
		if cfg.Packs, err = billing.ParsePacks(getenv("OAKALLOW_CREDIT_PACKS")); err != nil {
			return billing.Config{}, fmt.Errorf("OAKALLOW_CREDIT_PACKS: %w", err)
		}
	}
	switch low := getenv("OAKALLOW_LOW_BALANCE_USD"); low {
	case "0", "0.0", "0.00":
	default:
		if cfg.LowBalanceMicros, err = billing.ParseUSD(low, 6); err != nil {
			return billing.Config{}, fmt.Errorf("OAKALLOW_LOW_BALANCE_USD: %w", err)
		}
	}
	maxBytes, err := strconv.ParseInt(getenv("OAKALLOW_STRIPE_WEBHOOK_MAX_BYTES"), 10, 64)
	if err != nil {
		return billing.Config{}, fmt.Errorf("OAKALLOW_STRIPE_WEBHOOK_MAX_BYTES: %w", err)
	}
	cfg.WebhookMaxBytes = maxBytes
	return cfg, nil
}

// runCredits is `oakallow credits grant`: an operator adds prepaid credit
// (never expires) to a team, audited as credits.granted in each of its orgs.
func runCredits(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 || args[0] != "grant" {
		return usageError{"credits takes grant"}
	}
	fs := flag.NewFlagSet("credits grant", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	team := fs.String("team", "", "")
	org := fs.String("org", "", "")
	amount := fs.String("usd", "", "")
	note := fs.String("note", "", "")
	by := fs.String("by", "", "")
	key := fs.String("idempotency-key", "", "")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{"credits grant: " + err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("credits grant: unexpected arguments %q", fs.Args())}
	}
	if (*team == "") == (*org == "") {
		return usageError{"credits grant: name the team with -team or -org (one of them)"}
	}
	micros, err := billing.ParseUSD(*amount, 6)
	if err != nil {
		return usageError{"credits grant: -usd: " + err.Error()}
	}
	if *note == "" {
		return usageError{"credits grant: -note is required (why the credit is granted; it is audited)"}
	}
	if *by == "" {
		if u, err := user.Current(); err == nil {
			*by = u.Username
		}
	}
	st, err := openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	cfg, err := loadBilling()
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	svc := billing.New(cfg, st, nil, time.Now)
	g, err := svc.GrantCredit(ctx, billing.GrantInput{TeamID: *team, OrgID: *org, Micros: micros, By: *by, Note: *note, Key: *key})
	if errors.Is(err, billing.ErrNoTeam) {
		return fmt.Errorf("credits grant: no team %q or org %q", *team, *org)
	}
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(g)
}
