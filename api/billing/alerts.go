package billing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"oakallow/activities"
	"oakallow/activities/notify"
	"oakallow/api/mail"
	"oakallow/store"
)

// KindCreditsLow is the audit kind of a low-balance alert sent: one entry in
// each org of the team, in the transaction that records its deliveries.
const KindCreditsLow = notify.EventCreditsLow

// AlertsConfig configures the low-balance alert sender.
type AlertsConfig struct {
	// Store is where alerts wait (credit_alerts) and deliveries are recorded.
	Store *store.Store
	// Mode is the billing mode, for what the e-mail tells owners to do.
	Mode Mode
	// HandOff gives the webhook and channel deliveries their first attempt
	// once recorded (activities.Activities.HandOff); nil leaves them to the
	// worker's sweep.
	HandOff func(context.Context, []store.WebhookDelivery)
	// Mailer sends the owners' e-mail; nil: this server records them but
	// leaves sending to servers that have one.
	Mailer mail.Sender
	// BillingURL is the dashboard's Billing page, linked from channels and
	// e-mail; "" links nothing.
	BillingURL string
	// Poll is how often the sender looks for alerts and e-mail without being
	// woken (a notification lost while disconnected, an e-mail to retry).
	// Default 1 minute.
	Poll time.Duration
	// MailRetryFor is how long an e-mail that cannot be sent is retried
	// before it is given up (the alert would be stale). Default 24 h.
	MailRetryFor time.Duration
	// Logger and Now default to discard and time.Now.
	Logger *slog.Logger
	Now    func() time.Time
}

// Validate fills defaults and checks values.
func (c *AlertsConfig) Validate() error {
	if c.Store == nil {
		return errors.New("billing: alerts need a store")
	}
	if c.Poll == 0 {
		c.Poll = time.Minute
	}
	if c.MailRetryFor == 0 {
		c.MailRetryFor = 24 * time.Hour
	}
	if c.Poll < 0 || c.MailRetryFor < 0 {
		return errors.New("billing: alert poll and mail retry periods must be positive")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Alerts sends the credits.low alerts that spending recorded (credit_alerts,
// written in the transaction that crossed the threshold, so the check path
// pays nothing for them). Each alert is claimed by one API server
// (SELECT … FOR UPDATE SKIP LOCKED), which records in one transaction the
// event's deliveries to every org webhook and channel of the team (the
// path tool.auto_created takes: activities.RecordOrgEvent), its audit
// entries, one e-mail per owner, and the alert as sent. Nothing is lost to
// a crash: an alert or e-mail not marked sent is found again at the next
// start, and the deliveries are the worker's once recorded.
type Alerts struct {
	cfg  AlertsConfig
	wake chan struct{}
}

// NewAlerts checks cfg and returns the sender.
func NewAlerts(cfg AlertsConfig) (*Alerts, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Alerts{cfg: cfg, wake: make(chan struct{}, 1)}, nil
}

// Wake asks Run for a pass now (a new alert was announced); it never blocks.
func (a *Alerts) Wake() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Run sends alerts and e-mail at once, when woken, and every Poll, until ctx
// ends.
func (a *Alerts) Run(ctx context.Context) {
	t := time.NewTicker(a.cfg.Poll)
	defer t.Stop()
	for {
		if _, err := a.SendPending(ctx); err != nil && ctx.Err() == nil {
			a.cfg.Logger.WarnContext(ctx, "low-balance alerts not sent; retrying", "err", err)
		}
		if _, err := a.SendMail(ctx); err != nil && ctx.Err() == nil {
			a.cfg.Logger.WarnContext(ctx, "low-balance e-mail not sent; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		case <-t.C:
		}
	}
}

// alertBatch bounds the alerts one transaction claims.
const alertBatch = 50

// SendPending records the deliveries of every unsent alert, a batch per
// transaction, and returns how many alerts it sent.
func (a *Alerts) SendPending(ctx context.Context) (int, error) {
	sent := 0
	for {
		n, err := a.sendBatch(ctx)
		sent += n
		if err != nil || n < alertBatch {
			return sent, err
		}
	}
}

func (a *Alerts) sendBatch(ctx context.Context) (int, error) {
	var rows []store.WebhookDelivery
	n := 0
	err := a.cfg.Store.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		rows, n = nil, 0
		alerts, err := q.ClaimUnsentCreditAlerts(ctx, alertBatch)
		if err != nil {
			return fmt.Errorf("claim credit alerts: %w", err)
		}
		for _, al := range alerts {
			r, err := a.send(ctx, q, al)
			if err != nil {
				return fmt.Errorf("credit alert %s: %w", al.ID, err)
			}
			rows = append(rows, r...)
		}
		n = len(alerts)
		return nil
	})
	if err != nil {
		return 0, err
	}
	if len(rows) > 0 && a.cfg.HandOff != nil {
		a.cfg.HandOff(context.WithoutCancel(ctx), rows)
	}
	return n, nil
}

// send records one alert's deliveries, audit entries and e-mail on q.
func (a *Alerts) send(ctx context.Context, q *store.Queries, al store.CreditAlert) ([]store.WebhookDelivery, error) {
	now := a.cfg.Now().UTC()
	orgs, err := q.ListTeamOrgIDs(ctx, al.TeamID)
	if err != nil {
		return nil, fmt.Errorf("list orgs: %w", err)
	}
	var rows []store.WebhookDelivery
	for _, org := range orgs {
		data := map[string]any{
			"alert_id": al.ID, "team_id": al.TeamID, "org_id": org,
			"balance_micros": al.BalanceMicros, "threshold_micros": al.ThresholdMicros,
		}
		if a.cfg.BillingURL != "" {
			data["billing_url"] = a.cfg.BillingURL
		}
		r, err := activities.RecordOrgEvent(ctx, q, org, activities.OrgEvent{
			// The event is per org: one alert id, one event (and one
			// delivery per target) in each org of the team.
			Type: notify.EventCreditsLow, Key: al.ID + ":" + org, At: al.CreatedAt, Data: data,
			Details: fmt.Sprintf("The team's spendable credit is %s, below the alert threshold of %s. When it runs out, billable calls answer 402 insufficient_credits.",
				exactUSD(al.BalanceMicros), exactUSD(al.ThresholdMicros)),
			DashboardURL: a.cfg.BillingURL,
		}, now)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r...)
	}
	owners, err := q.ListTeamOwnerIDs(ctx, al.TeamID)
	if err != nil {
		return nil, fmt.Errorf("list owners: %w", err)
	}
	for _, u := range owners {
		if err := q.InsertCreditAlertMail(ctx, store.InsertCreditAlertMailParams{AlertID: al.ID, UserID: u, CreatedAt: now}); err != nil {
			return nil, fmt.Errorf("record e-mail: %w", err)
		}
	}
	if err := audit(ctx, q, al.TeamID, Actor{Kind: "system", ID: "low-balance-alert"}, now, KindCreditsLow, al.ID, "sent",
		map[string]any{"balance_micros": al.BalanceMicros, "threshold_micros": al.ThresholdMicros,
			"crossed_at": al.CreatedAt.UTC(), "deliveries": len(rows), "owners_emailed": len(owners)}); err != nil {
		return nil, err
	}
	if err := q.MarkCreditAlertSent(ctx, store.MarkCreditAlertSentParams{ID: al.ID, SentAt: &now}); err != nil {
		return nil, fmt.Errorf("mark sent: %w", err)
	}
	return rows, nil
}

// Outcomes of a credits.low e-mail (credit_alert_mails.status).
const (
	mailPending = "pending"
	mailSent    = "sent"
	mailFailed  = "failed"
)

// maxMailError bounds the error kept for an e-mail that was not sent.
const maxMailError = 500

// SendMail sends the owners' e-mail that is due, one per transaction (the
// row stays locked while the mailer delivers it), and returns how many it
// sent. Without a mailer it sends nothing.
func (a *Alerts) SendMail(ctx context.Context) (int, error) {
	if a.cfg.Mailer == nil {
		return 0, nil
	}
	sent := 0
	for {
		found, ok, err := a.sendOneMail(ctx)
		if err != nil || !found {
			return sent, err
		}
		if ok {
			sent++
		}
	}
}

// sendOneMail sends the next e-mail due; found is false when none is.
func (a *Alerts) sendOneMail(ctx context.Context) (found, ok bool, err error) {
	err = a.cfg.Store.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		now := a.cfg.Now().UTC()
		m, err := q.ClaimDueCreditAlertMail(ctx, now)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("claim credits.low e-mail: %w", err)
		}
		found = true
		out := store.SetCreditAlertMailOutcomeParams{AlertID: m.AlertID, UserID: m.UserID, NextAttemptAt: now}
		switch {
		case m.UserStatus != "active":
			out.Status, out.LastError = mailFailed, "the person's account was deleted"
		case now.Sub(m.CreatedAt) > a.cfg.MailRetryFor:
			out.Status, out.LastError = mailFailed, "given up: not sent within the retry period"
		default:
			if sendErr := a.cfg.Mailer.Send(ctx, a.message(m)); sendErr != nil {
				if ctx.Err() != nil {
					return ctx.Err() // shutting down: leave it due
				}
				out.Status, out.LastError = mailPending, cut(sendErr.Error(), maxMailError)
				out.NextAttemptAt = now.Add(mailBackoff(m.Attempts))
				a.cfg.Logger.WarnContext(ctx, "credits.low e-mail not sent; will retry", "alert_id", m.AlertID,
					"user_id", m.UserID, "attempt", m.Attempts+1, "err", sendErr)
			} else {
				out.Status, out.SentAt, ok = mailSent, &now, true
			}
		}
		return q.SetCreditAlertMailOutcome(ctx, out)
	})
	return found, ok, err
}

// mailBackoff is the wait after the attempts-th failed attempt: 30 s
// doubling, at most an hour.
func mailBackoff(attempts int32) time.Duration {
	d := 30 * time.Second
	for range min(attempts, 7) {
		d *= 2
	}
	return min(d, time.Hour)
}

// message is the e-mail an owner receives about a low balance.
func (a *Alerts) message(m store.ClaimDueCreditAlertMailRow) mail.Message {
	team := oneLine(m.TeamName)
	todo, page := "Ask the operator of this oakallow installation to grant credit (oakallow credits grant).", "The Billing page shows the balance"
	if a.cfg.Mode == ModeStripe {
		todo, page = "Buy credit on the Billing page.", "Billing"
	}
	if a.cfg.BillingURL != "" {
		// On a line of its own: a mail client must not take a following
		// full stop into the link.
		todo += "\n" + page + ":\n" + a.cfg.BillingURL
	}
	text := fmt.Sprintf("The spendable credit of your team %s fell to %s on %s, below the alert threshold of %s.\n\n"+
		"When it runs out, billable calls (permission checks and approval requests made with standard keys or agent identities) "+
		"answer 402 insufficient_credits; everything else keeps working.\n\n%s\n\n"+
		"You receive this as an owner of the team, once each time the balance falls below the threshold.\n",
		team, exactUSD(m.BalanceMicros), m.CrossedAt.UTC().Format("2 Jan 2006 15:04 MST"), exactUSD(m.ThresholdMicros), todo)
	return mail.Message{To: m.Email, Subject: "oakallow: credit is running low for " + team, Text: text}
}

// exactUSD shows micro-dollars as dollars with at least two decimals and as
// many more as needed ($0.995, not a rounded $1.00 below a $1.00 threshold).
func exactUSD(micros int64) string {
	sign := ""
	if micros < 0 {
		sign, micros = "-", -micros
	}
	s := new(big.Rat).SetFrac64(micros, 1_000_000).FloatString(6)
	s = strings.TrimRight(s, "0")
	if i := strings.IndexByte(s, '.'); len(s)-i-1 < 2 {
		s += strings.Repeat("0", 2-(len(s)-i-1))
	}
	return sign + "$" + s
}

// oneLine flattens control characters (a team name goes into a subject).
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }), " ")
}

// cut shortens s to at most n bytes on a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
