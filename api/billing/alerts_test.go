package billing

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/api/mail"
	"oakallow/dev/devtest"
	"oakallow/store"
)

func TestMain(m *testing.M) { devtest.Main(m) }

func TestExactUSD(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		micros int64
		want   string
	}{
		{1_000_000, "$1.00"},
		{995_000, "$0.995"},
		{999_999, "$0.999999"},
		{0, "$0.00"},
		{50_000, "$0.05"},
		{-2_000_000, "-$2.00"},
		{123_450_000, "$123.45"},
	} {
		require.Equal(t, tc.want, exactUSD(tc.micros), "%d", tc.micros)
	}
}

func TestMailBackoffGrowsToAnHour(t *testing.T) {
	t.Parallel()
	require.Equal(t, 30*time.Second, mailBackoff(0))
	require.Equal(t, time.Minute, mailBackoff(1))
	require.Equal(t, time.Hour, mailBackoff(7))
	require.Equal(t, time.Hour, mailBackoff(1000))
}

// fakeMailer fails the first fail sends, then keeps what it is given.
type fakeMailer struct {
	mu   sync.Mutex
	fail int
	got  []mail.Message
}

func (f *fakeMailer) Send(_ context.Context, m mail.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail > 0 {
		f.fail--
		return errors.New("451 try again later")
	}
	f.got = append(f.got, m)
	return nil
}

func (f *fakeMailer) sent() []mail.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]mail.Message(nil), f.got...)
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// alertTeam seeds a team "Acme\nCorp" with an org, two owners and an admin,
// and one unsent alert.
func alertTeam(t *testing.T, st *store.Store, now time.Time) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, st.CreateTeam(ctx, store.CreateTeamParams{ID: "team_1", Name: "Acme\nCorp", CreatedAt: now}))
	require.NoError(t, st.CreateOrg(ctx, store.CreateOrgParams{ID: "org_1", TeamID: "team_1", Name: "app", CreatedAt: now}))
	for _, p := range []struct{ id, role string }{{"usr_a", "owner"}, {"usr_b", "owner"}, {"usr_c", "admin"}} {
		require.NoError(t, st.CreateUser(ctx, store.CreateUserParams{ID: p.id, Email: p.id + "@example.com", Name: p.id, CreatedAt: now}))
		require.NoError(t, st.CreateMembership(ctx, store.CreateMembershipParams{TeamID: "team_1", UserID: p.id, Role: p.role, CreatedAt: now}))
	}
	require.NoError(t, st.InsertCreditAlert(ctx, store.InsertCreditAlertParams{ID: "cal_1", TeamID: "team_1",
		BalanceMicros: 995_000, ThresholdMicros: 1_000_000, CreatedAt: now}))
}

func mailStatus(t *testing.T, st *store.Store, user string) (status string, attempts int, lastError string) {
	t.Helper()
	require.NoError(t, st.Pool.QueryRow(context.Background(),
		"SELECT status, attempts, last_error FROM credit_alert_mails WHERE alert_id = 'cal_1' AND user_id = $1", user).
		Scan(&status, &attempts, &lastError))
	return status, attempts, lastError
}

// An alert becomes an audit entry and one e-mail per owner, once: a second
// pass finds nothing. An e-mail the server refuses is retried after the
// backoff, not before, and sent once.
func TestAlertMailIsRetriedAndSentOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := devtest.Store(t)
	clk := &clock{t: time.Date(2026, 12, 5, 18, 0, 0, 0, time.UTC)}
	alertTeam(t, st, clk.Now())
	mailer := &fakeMailer{fail: 1}
	a, err := NewAlerts(AlertsConfig{Store: st, Mode: ModeStripe, Mailer: mailer, BillingURL: "https://oak.example.com/billing", Now: clk.Now})
	require.NoError(t, err)

	n, err := a.SendPending(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, err = a.SendPending(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "an alert is sent once")
	var audits int
	require.NoError(t, st.Pool.QueryRow(ctx, "SELECT count(*) FROM audit_events WHERE kind = 'credits.low' AND subject = 'cal_1' AND org_id = 'org_1' AND actor_kind = 'system'").Scan(&audits))
	require.Equal(t, 1, audits)

	sent, err := a.SendMail(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, sent, "one owner's e-mail went, the other's was refused")
	failed := "usr_b"
	if mailer.sent()[0].To == "usr_b@example.com" {
		failed = "usr_a"
	}
	status, attempts, lastErr := mailStatus(t, st, failed)
	require.Equal(t, "pending", status)
	require.Equal(t, 1, attempts)
	require.Contains(t, lastErr, "451")

	clk.add(29 * time.Second)
	sent, err = a.SendMail(ctx)
	require.NoError(t, err)
	require.Zero(t, sent, "not before the backoff")
	clk.add(2 * time.Second)
	sent, err = a.SendMail(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, sent)
	sent, err = a.SendMail(ctx)
	require.NoError(t, err)
	require.Zero(t, sent)

	got := mailer.sent()
	require.Len(t, got, 2)
	require.ElementsMatch(t, []string{"usr_a@example.com", "usr_b@example.com"}, []string{got[0].To, got[1].To}, "owners only, each once")
	m := got[0]
	require.Equal(t, "oakallow: credit is running low for Acme Corp", m.Subject, "no line break from the team name in a header")
	require.Contains(t, m.Text, "fell to $0.995")
	require.Contains(t, m.Text, "threshold of $1.00")
	require.Contains(t, m.Text, "Buy credit on the Billing page.\nBilling:\nhttps://oak.example.com/billing\n")
	status, attempts, _ = mailStatus(t, st, failed)
	require.Equal(t, "sent", status)
	require.Equal(t, 2, attempts)
}

// Without a mailer the e-mail waits for a server that has one; an owner
// deleted meanwhile gets none, and one not sent within the retry period is
// given up.
func TestAlertMailWaitsAndGivesUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := devtest.Store(t)
	clk := &clock{t: time.Date(2026, 12, 5, 18, 0, 0, 0, time.UTC)}
	alertTeam(t, st, clk.Now())
	noMail, err := NewAlerts(AlertsConfig{Store: st, Now: clk.Now})
	require.NoError(t, err)
	n, err := noMail.SendPending(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	sent, err := noMail.SendMail(ctx)
	require.NoError(t, err)
	require.Zero(t, sent)
	status, attempts, _ := mailStatus(t, st, "usr_a")
	require.Equal(t, "pending", status)
	require.Zero(t, attempts)

	_, err = st.Pool.Exec(ctx, "UPDATE users SET status = 'deleted' WHERE id = 'usr_a'")
	require.NoError(t, err)
	clk.add(25 * time.Hour)
	mailer := &fakeMailer{}
	a, err := NewAlerts(AlertsConfig{Store: st, Mode: ModePrepaid, Mailer: mailer, Now: clk.Now})
	require.NoError(t, err)
	sent, err = a.SendMail(ctx)
	require.NoError(t, err)
	require.Zero(t, sent)
	require.Empty(t, mailer.sent())
	status, _, lastErr := mailStatus(t, st, "usr_a")
	require.Equal(t, "failed", status)
	require.Contains(t, lastErr, "deleted")
	status, _, lastErr = mailStatus(t, st, "usr_b")
	require.Equal(t, "failed", status)
	require.Contains(t, lastErr, "retry period")
}

// The prepaid e-mail says who adds credit; without a public URL it links
// nothing.
func TestAlertMessageByMode(t *testing.T) {
	t.Parallel()
	a, err := NewAlerts(AlertsConfig{Store: &store.Store{}, Mode: ModePrepaid})
	require.NoError(t, err)
	m := a.message(store.ClaimDueCreditAlertMailRow{Email: "o@example.com", TeamName: "Acme", BalanceMicros: -5000,
		ThresholdMicros: 2_500_000, CrossedAt: time.Date(2026, 12, 5, 18, 4, 0, 0, time.UTC)})
	require.Equal(t, "o@example.com", m.To)
	require.Contains(t, m.Text, "fell to -$0.005 on 5 Dec 2026 18:04 UTC, below the alert threshold of $2.50")
	require.Contains(t, m.Text, "grant credit (oakallow credits grant).\n\nYou receive this")
	require.False(t, strings.Contains(m.Text, "http"), m.Text)
}
