package billing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stripe/stripe-go/v85"

	"oakallow/store"
)

// Errors the surfaces map to answers.
var (
	// ErrNotStripe: a purchase or a Stripe webhook while the mode is not stripe.
	ErrNotStripe = errors.New("billing: purchases are not enabled on this installation (billing mode is not stripe)")
	// ErrUnknownPack: no credit pack with that id.
	ErrUnknownPack = errors.New("billing: no credit pack with that id")
	// ErrBadSignature: the Stripe-Signature header is missing, malformed,
	// wrong, or older than the tolerance.
	ErrBadSignature = errors.New("billing: Stripe-Signature does not verify")
	// ErrBadEvent: a correctly signed body that is not an event this
	// installation can read (bad JSON, an API version of another release
	// train than stripe-go's).
	ErrBadEvent = errors.New("billing: not a readable Stripe event")
	// ErrStripeUnavailable: Stripe did not create the Checkout session.
	ErrStripeUnavailable = errors.New("billing: Stripe did not answer")
	// ErrNoTeam: the team (or org) named does not exist.
	ErrNoTeam = errors.New("billing: no such team or org")
)

// Audit kinds of billing events.
const (
	KindCheckoutStarted = "billing.checkout_started"
	KindCreditPurchased = "credits.purchased"
	KindCreditGranted   = "credits.granted"
	KindCreditReversed  = "credits.reversed"
)

// Actor is who caused a billing event, as the audit log names it.
type Actor struct {
	Kind string // api_key, user, operator, stripe
	ID   string
}

// Service is billing: purchases, Stripe events, operator grants.
type Service struct {
	cfg    Config
	st     *store.Store
	stripe *stripe.Client
	log    *slog.Logger
	now    func() time.Time
}

// New builds the service; cfg must be valid (Config.Validate).
func New(cfg Config, st *store.Store, log *slog.Logger, now func() time.Time) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, st: st, log: log, now: now}
	if cfg.Mode == ModeStripe {
		bc := &stripe.BackendConfig{
			// stripe-go retries network errors and 409/429/5xx with the same
			// Idempotency-Key, so a retry never creates a second session.
			MaxNetworkRetries: stripe.Int64(2),
			HTTPClient:        &http.Client{Timeout: 20 * time.Second},
		}
		if cfg.StripeAPIURL != "" {
			bc.URL = stripe.String(cfg.StripeAPIURL)
		}
		s.stripe = stripe.NewClient(cfg.StripeSecretKey, stripe.WithBackends(stripe.NewBackendsWithConfig(bc)))
	}
	return s
}

// Config returns the configuration in force.
func (s *Service) Config() Config { return s.cfg }

// audit writes a billing event into the audit log of every org of the
// team (billing is per team; the log is read per org), in q's transaction.
func audit(ctx context.Context, q *store.Queries, teamID string, actor Actor, now time.Time, kind, subject, outcome string, details map[string]any) error {
	raw, err := json.Marshal(details)
	if err != nil {
		return fmt.Errorf("encode audit details of %s: %w", kind, err)
	}
	orgs, err := q.ListTeamOrgIDs(ctx, teamID)
	if err != nil {
		return fmt.Errorf("list orgs of team: %w", err)
	}
	if len(orgs) == 0 {
		orgs = []string{""} // a team without orgs: recorded at team level
	}
	for _, org := range orgs {
		if err := q.InsertAuditEvent(ctx, store.InsertAuditEventParams{
			ID: store.NewID("evt"), OrgID: org, TeamID: teamID, OccurredAt: now,
			ActorKind: actor.Kind, ActorID: actor.ID, Kind: kind, Subject: subject, Outcome: outcome, Details: raw,
		}); err != nil {
			return fmt.Errorf("audit %s: %w", kind, err)
		}
	}
	return nil
}

// credited is called in the transaction that added credit to a team: a
// balance back at or above the alert threshold may alert again.
func (s *Service) credited(ctx context.Context, q *store.Queries, teamID string, now time.Time) error {
	if s.cfg.LowBalanceMicros == 0 {
		return nil
	}
	return q.ClearLowBalanceAlert(ctx, store.ClearLowBalanceAlertParams{TeamID: teamID, Now: now, Threshold: s.cfg.LowBalanceMicros})
}

// debited is called with a team's balance after credit was taken back: a
// first crossing below the threshold records a credits.low alert.
func (s *Service) debited(ctx context.Context, q *store.Queries, b store.TeamBalance, now time.Time) error {
	if s.cfg.LowBalanceMicros == 0 || !s.cfg.Mode.Charges() || b.LowBalanceAlerted {
		return nil
	}
	spendable := Spendable(b, now)
	if spendable >= s.cfg.LowBalanceMicros {
		return nil
	}
	n, err := q.MarkLowBalanceAlerted(ctx, b.TeamID)
	if err != nil || n == 0 {
		return err
	}
	return q.InsertCreditAlert(ctx, store.InsertCreditAlertParams{ID: store.NewID("cal"), TeamID: b.TeamID,
		BalanceMicros: spendable, ThresholdMicros: s.cfg.LowBalanceMicros, CreatedAt: now})
}

// Spendable is what a balance can pay now: unexpired free credit plus
// purchased credit (which a refund may have taken below zero).
func Spendable(b store.TeamBalance, now time.Time) int64 {
	return FreeNow(b, now) + b.PurchasedMicros
}

// FreeNow is the balance's unexpired free credit.
func FreeNow(b store.TeamBalance, now time.Time) int64 {
	if b.FreeExpiresAt != nil && b.FreeExpiresAt.After(now) {
		return b.FreeMicros
	}
	return 0
}

// GrantInput is an operator's grant.
type GrantInput struct {
	// TeamID or OrgID names the team (an org names its team).
	TeamID, OrgID string
	Micros        int64
	// By names the operator; Note says why. Both are audited.
	By, Note string
	// Key, when set, makes the grant idempotent: a second grant with the
	// same key adds nothing.
	Key string
}

// Grant is a credit grant as shown to operators and in GET /v1/credits.
type Grant struct {
	ID        string     `json:"id"`
	TeamID    string     `json:"team_id"`
	Kind      string     `json:"kind"`
	Micros    int64      `json:"amount_micros"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	// Added is false when an idempotent grant had been made already.
	Added bool `json:"added"`
}

// GrantCredit adds prepaid credit (never expires) to a team, audited as
// credits.granted by the operator, in one transaction.
func (s *Service) GrantCredit(ctx context.Context, in GrantInput) (Grant, error) {
	switch {
	case (in.TeamID == "") == (in.OrgID == ""):
		return Grant{}, errors.New("billing: name a team or an org")
	case in.Micros <= 0:
		return Grant{}, errors.New("billing: the amount must be positive")
	case in.By == "" || len(in.By) > 200:
		return Grant{}, errors.New("billing: the operator's name is required (at most 200 characters)")
	case in.Note == "" || len(in.Note) > 500:
		return Grant{}, errors.New("billing: a note saying why is required (at most 500 characters)")
	case len(in.Key) > 200:
		return Grant{}, errors.New("billing: the idempotency key is longer than 200 characters")
	}
	now := s.now().UTC()
	g := Grant{ID: store.NewID("grant"), TeamID: in.TeamID, Kind: "prepaid", Micros: in.Micros, CreatedAt: now}
	source := "operator:" + g.ID
	if in.Key != "" {
		source = "operator-key:" + in.Key
	}
	err := s.st.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		if in.OrgID != "" {
			org, err := q.GetOrg(ctx, in.OrgID)
			if errors.Is(err, store.ErrNotFound) {
				return ErrNoTeam
			}
			if err != nil {
				return err
			}
			g.TeamID = org.TeamID
		} else if _, err := q.GetTeam(ctx, in.TeamID); errors.Is(err, store.ErrNotFound) {
			return ErrNoTeam
		} else if err != nil {
			return err
		}
		n, err := q.CreateCreditGrant(ctx, store.CreateCreditGrantParams{ID: g.ID, TeamID: g.TeamID, Kind: "prepaid",
			AmountMicros: in.Micros, Source: source, GrantedBy: in.By, Note: in.Note, CreatedAt: now})
		if err != nil {
			return fmt.Errorf("grant credit: %w", err)
		}
		if g.Added = n == 1; !g.Added {
			return nil
		}
		if err := s.credited(ctx, q, g.TeamID, now); err != nil {
			return err
		}
		return audit(ctx, q, g.TeamID, Actor{Kind: "operator", ID: in.By}, now, KindCreditGranted, g.ID, "granted",
			map[string]any{"amount_micros": in.Micros, "note": in.Note, "kind": "prepaid"})
	})
	if err != nil {
		return Grant{}, err
	}
	return g, nil
}
