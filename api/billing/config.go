package billing

import (
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strings"
)

// Mode is how an installation charges for billable calls (SPEC §9).
type Mode string

// Billing modes.
const (
	// ModeStripe is the hosted product: credit is bought through Stripe
	// Checkout; billable calls are refused with 402 at zero balance.
	ModeStripe Mode = "stripe"
	// ModePrepaid: operators grant credit with `oakallow credits grant`;
	// billable calls are refused with 402 at zero balance.
	ModePrepaid Mode = "prepaid"
	// ModeOff is for self-hosters: usage is metered and shown, nothing is
	// ever refused for want of credit and nothing is debited.
	ModeOff Mode = "off"
)

// ParseMode reads a mode name; "" is prepaid.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case "":
		return ModePrepaid, nil
	case ModeStripe, ModePrepaid, ModeOff:
		return m, nil
	default:
		return "", fmt.Errorf("billing mode %q is not stripe, prepaid or off", s)
	}
}

// Charges reports whether billable calls are paid from the balance (and
// refused with 402 when it is empty).
func (m Mode) Charges() bool { return m != ModeOff }

// Pack is a credit pack on sale: the price the customer pays and the credit
// it buys (which may be more, as a volume discount).
type Pack struct {
	ID           string `json:"id" doc:"Pack id, passed to POST /v1/billing/checkout."`
	PriceCents   int64  `json:"price_cents" doc:"Price in US cents."`
	CreditMicros int64  `json:"credit_micros" doc:"Credit the pack buys, in micro-dollars."`
}

// DefaultPacks are sold when OAKALLOW_CREDIT_PACKS is not set.
const DefaultPacks = "starter:10:10,growth:50:50,scale:200:220"

var packID = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// maxPackUSD bounds a pack's price and credit ($1,000,000): Stripe's own
// limit on one payment is lower, and a typo should not mint a fortune.
const maxPackUSD = 1_000_000

// ParsePacks reads "id:price_usd:credit_usd,…", e.g. "starter:10:10,scale:200:220"
// (amounts in dollars with at most two decimals for prices and six for credit).
func ParsePacks(s string) ([]Pack, error) {
	var packs []Pack
	seen := map[string]bool{}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		parts := strings.Split(item, ":")
		if len(parts) != 3 {
			return nil, fmt.Errorf("credit pack %q: want id:price_usd:credit_usd", item)
		}
		id := strings.TrimSpace(parts[0])
		if !packID.MatchString(id) {
			return nil, fmt.Errorf("credit pack id %q: lower-case letters, digits, - and _ (at most 64)", id)
		}
		if seen[id] {
			return nil, fmt.Errorf("credit pack %q listed twice", id)
		}
		seen[id] = true
		price, err := ParseUSD(parts[1], 2)
		if err != nil {
			return nil, fmt.Errorf("credit pack %q price: %w", id, err)
		}
		credit, err := ParseUSD(parts[2], 6)
		if err != nil {
			return nil, fmt.Errorf("credit pack %q credit: %w", id, err)
		}
		// Stripe's smallest USD charge is $0.50.
		if price < 500_000 {
			return nil, fmt.Errorf("credit pack %q: price below $0.50, Stripe's minimum charge", id)
		}
		packs = append(packs, Pack{ID: id, PriceCents: price / 10_000, CreditMicros: credit})
	}
	if len(packs) == 0 {
		return nil, errors.New("no credit packs configured")
	}
	return packs, nil
}

// ParseUSD reads a positive dollar amount with at most decimals digits after
// the point, up to $1,000,000, and returns it in micro-dollars.
func ParseUSD(s string, decimals int) (int64, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "$")
	r, ok := new(big.Rat).SetString(s)
	if !ok || strings.ContainsAny(s, "eE/") {
		return 0, fmt.Errorf("%q is not an amount in dollars", s)
	}
	if i := strings.IndexByte(s, '.'); i >= 0 && len(s)-i-1 > decimals {
		return 0, fmt.Errorf("%q has more than %d decimals", s, decimals)
	}
	if r.Sign() <= 0 || r.Cmp(big.NewRat(maxPackUSD, 1)) > 0 {
		return 0, fmt.Errorf("%q is not between $0 and $%d", s, maxPackUSD)
	}
	micros := new(big.Rat).Mul(r, big.NewRat(1_000_000, 1))
	if !micros.IsInt() {
		return 0, fmt.Errorf("%q is finer than a micro-dollar", s)
	}
	return micros.Num().Int64(), nil
}

// Config configures billing.
type Config struct {
	// Mode: stripe, prepaid (default) or off (OAKALLOW_BILLING_MODE).
	Mode Mode
	// Packs on sale in mode stripe (OAKALLOW_CREDIT_PACKS; default DefaultPacks).
	Packs []Pack
	// StripeSecretKey is the Stripe API key (STRIPE_SECRET_KEY; sk_test_… or
	// sk_live_…, or a restricted rk_ key allowed to write Checkout sessions).
	// Required in mode stripe.
	StripeSecretKey string
	// StripeWebhookSecret verifies Stripe-Signature (STRIPE_WEBHOOK_SECRET,
	// whsec_…). Required in mode stripe.
	StripeWebhookSecret string
	// StripeAPIURL replaces Stripe's API address (STRIPE_API_URL), for
	// stripe-mock in tests and local runs. Default: Stripe's.
	StripeAPIURL string
	// SuccessURL and CancelURL are where Checkout sends the buyer back.
	// Default: the dashboard's billing page under the public URL.
	SuccessURL, CancelURL string
	// LowBalanceMicros is the credits.low alert threshold
	// (OAKALLOW_LOW_BALANCE_USD; default $1.00; 0 turns the alert off).
	LowBalanceMicros int64
	// WebhookMaxBytes bounds a Stripe webhook body (default 1 MiB: Stripe's
	// events exceed the API's 64 KiB default with large Checkout sessions).
	WebhookMaxBytes int64
}

// DefaultLowBalanceMicros is the default alert threshold ($1.00, 200 calls).
const DefaultLowBalanceMicros = 1_000_000

// DefaultWebhookMaxBytes is the default bound on a Stripe webhook body.
const DefaultWebhookMaxBytes = 1 << 20

// Validate fills defaults and checks values.
func (c *Config) Validate() error {
	if c.Mode == "" {
		c.Mode = ModePrepaid
	}
	if _, err := ParseMode(string(c.Mode)); err != nil {
		return err
	}
	if c.WebhookMaxBytes == 0 {
		c.WebhookMaxBytes = DefaultWebhookMaxBytes
	}
	if c.WebhookMaxBytes < 64<<10 || c.WebhookMaxBytes > 16<<20 {
		return errors.New("billing: webhook body limit must be between 64 KiB and 16 MiB")
	}
	if c.LowBalanceMicros < 0 {
		return errors.New("billing: low-balance threshold must not be negative")
	}
	if c.Mode != ModeStripe {
		return nil
	}
	if c.Packs == nil {
		packs, err := ParsePacks(DefaultPacks)
		if err != nil {
			return err
		}
		c.Packs = packs
	}
	switch {
	case c.StripeSecretKey == "":
		return errors.New("billing: mode stripe needs STRIPE_SECRET_KEY")
	case c.StripeWebhookSecret == "":
		return errors.New("billing: mode stripe needs STRIPE_WEBHOOK_SECRET")
	case c.SuccessURL == "" || c.CancelURL == "":
		return errors.New("billing: mode stripe needs Checkout success and cancel URLs")
	}
	return nil
}

// Pack returns the pack with the id.
func (c *Config) Pack(id string) (Pack, bool) {
	for _, p := range c.Packs {
		if p.ID == id {
			return p, true
		}
	}
	return Pack{}, false
}
