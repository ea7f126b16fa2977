package passkeys_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/api/passkeys"
	"oakallow/api/passkeys/passkeystest"
	"oakallow/dev/devtest"
	"oakallow/store"
)

func TestMain(m *testing.M) { devtest.Main(m) }

const (
	rpID   = "localhost"
	origin = "http://localhost:8080"
)

type fixture struct {
	st  *store.Store
	svc *passkeys.Service
	now *time.Time
	mu  *sync.Mutex
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	st := devtest.Store(t)
	now := time.Now().UTC()
	mu := &sync.Mutex{}
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	svc, err := passkeys.New(passkeys.Config{RPID: rpID, Origins: []string{origin}}, st, clock)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, st.CreateTeam(ctx, store.CreateTeamParams{ID: "team_1", Name: "t", CreatedAt: now}))
	require.NoError(t, st.CreateOrg(ctx, store.CreateOrgParams{ID: "org_1", TeamID: "team_1", Name: "o", CreatedAt: now}))
	for _, u := range []string{"usr_a", "usr_b"} {
		require.NoError(t, st.CreateUser(ctx, store.CreateUserParams{ID: u, Email: u + "@example.com", CreatedAt: now}))
	}
	return fixture{st: st, svc: svc, now: &now, mu: mu}
}

func (f fixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	*f.now = f.now.Add(d)
}

// enroll runs a whole enrollment ceremony for user with a.
func (f fixture) enroll(t *testing.T, a *passkeystest.Authenticator, user string) passkeys.Enrolled {
	t.Helper()
	ctx := context.Background()
	opts, err := f.svc.BeginEnrollment(ctx, user)
	require.NoError(t, err)
	resp, err := a.Create(opts.PublicKey)
	require.NoError(t, err)
	e, err := f.svc.FinishEnrollment(ctx, user, opts.CeremonyID, resp, "")
	require.NoError(t, err)
	return e
}

func (f fixture) signIn(t *testing.T, a *passkeystest.Authenticator) (passkeys.SignedIn, error) {
	t.Helper()
	ctx := context.Background()
	opts, err := f.svc.BeginSignIn(ctx)
	require.NoError(t, err)
	resp, err := a.Get(opts.PublicKey)
	require.NoError(t, err)
	return f.svc.FinishSignIn(ctx, opts.CeremonyID, resp)
}

func requireCode(t *testing.T, err error, code string) {
	t.Helper()
	var e *passkeys.Error
	require.True(t, errors.As(err, &e), "want a refusal with code %s, got %v", code, err)
	require.Equal(t, code, e.Code)
}

func auditKinds(t *testing.T, st *store.Store) map[string]int {
	t.Helper()
	rows, err := st.Pool.Query(context.Background(), `SELECT kind FROM audit_events`)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var k string
		require.NoError(t, rows.Scan(&k))
		out[k]++
	}
	return out
}

func TestEnrollAndSignInWithoutUsername(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a := passkeystest.New(rpID, origin)
	first := f.enroll(t, a, "usr_a")
	require.Len(t, first.RecoveryCodes, passkeys.RecoveryCodeCount, "the first enrollment shows the recovery codes")
	for _, c := range first.RecoveryCodes {
		require.Len(t, c, passkeys.RecoveryCodeLen)
	}
	second := f.enroll(t, a, "usr_a")
	require.Empty(t, second.RecoveryCodes, "codes are shown once, on the first enrollment only")

	in, err := f.signIn(t, a)
	require.NoError(t, err)
	require.Equal(t, "usr_a", in.UserID)
	require.Equal(t, second.Passkey.ID, in.PasskeyID)

	var handle []byte
	require.NoError(t, f.st.Pool.QueryRow(context.Background(), `SELECT webauthn_handle FROM users WHERE id = 'usr_a'`).Scan(&handle))
	require.Len(t, handle, 64)
	kinds := auditKinds(t, f.st)
	require.Equal(t, 2, kinds[passkeys.KindEnrolled])
	require.Equal(t, 1, kinds[passkeys.KindRecoveryGenerated])
	require.Equal(t, 1, kinds[passkeys.KindSignedIn])
}

func TestCeremoniesAreSingleUseAndExpire(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	a := passkeystest.New(rpID, origin)
	f.enroll(t, a, "usr_a")

	opts, err := f.svc.BeginSignIn(ctx)
	require.NoError(t, err)
	resp, err := a.Get(opts.PublicKey)
	require.NoError(t, err)
	_, err = f.svc.FinishSignIn(ctx, opts.CeremonyID, resp)
	require.NoError(t, err)
	_, err = f.svc.FinishSignIn(ctx, opts.CeremonyID, resp)
	requireCode(t, err, passkeys.CodeCeremonyInvalid)

	// Many replicas racing for one ceremony: exactly one gets it.
	opts, err = f.svc.BeginSignIn(ctx)
	require.NoError(t, err)
	resp, err = a.Get(opts.PublicKey)
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 8 {
		wg.Go(func() {
			if _, err := f.svc.FinishSignIn(ctx, opts.CeremonyID, resp); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Equal(t, 1, wins)

	opts, err = f.svc.BeginSignIn(ctx)
	require.NoError(t, err)
	resp, err = a.Get(opts.PublicKey)
	require.NoError(t, err)
	f.advance(5*time.Minute + time.Second)
	_, err = f.svc.FinishSignIn(ctx, opts.CeremonyID, resp)
	requireCode(t, err, passkeys.CodeCeremonyInvalid)
	n, err := f.svc.SweepCeremonies(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "the expired ceremony was consumed by the refused attempt")
}

func TestCloneWarningRefusesSignIn(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	a := passkeystest.New(rpID, origin)
	f.enroll(t, a, "usr_a")
	_, err := f.signIn(t, a)
	require.NoError(t, err)

	opts, err := f.svc.BeginSignIn(ctx)
	require.NoError(t, err)
	resp, err := a.GetReplayingCounter(opts.PublicKey)
	require.NoError(t, err)
	_, err = f.svc.FinishSignIn(ctx, opts.CeremonyID, resp)
	requireCode(t, err, passkeys.CodeCloneWarning)
	require.Equal(t, 1, auditKinds(t, f.st)[passkeys.KindSignInFailed])
}

func TestUserVerificationIsRequired(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	a := passkeystest.New(rpID, origin)
	f.enroll(t, a, "usr_a")
	a.WithoutUserVerification()

	opts, err := f.svc.BeginSignIn(ctx)
	require.NoError(t, err)
	resp, err := a.Get(opts.PublicKey)
	require.NoError(t, err)
	_, err = f.svc.FinishSignIn(ctx, opts.CeremonyID, resp)
	requireCode(t, err, passkeys.CodeAssertionInvalid)

	eopts, err := f.svc.BeginEnrollment(ctx, "usr_a")
	require.NoError(t, err)
	eresp, err := a.Create(eopts.PublicKey)
	require.NoError(t, err)
	_, err = f.svc.FinishEnrollment(ctx, "usr_a", eopts.CeremonyID, eresp, "")
	requireCode(t, err, passkeys.CodeAssertionInvalid)
}

func TestWrongOriginIsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	a := passkeystest.New(rpID, origin)
	f.enroll(t, a, "usr_a")
	evil := passkeystest.New(rpID, "http://localhost:9999")
	opts, err := f.svc.BeginEnrollment(ctx, "usr_b")
	require.NoError(t, err)
	resp, err := evil.Create(opts.PublicKey)
	require.NoError(t, err)
	_, err = f.svc.FinishEnrollment(ctx, "usr_b", opts.CeremonyID, resp, "")
	requireCode(t, err, passkeys.CodeAssertionInvalid)
}

func TestEnrollmentCeremonyBelongsToItsUser(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	a := passkeystest.New(rpID, origin)
	opts, err := f.svc.BeginEnrollment(ctx, "usr_a")
	require.NoError(t, err)
	resp, err := a.Create(opts.PublicKey)
	require.NoError(t, err)
	_, err = f.svc.FinishEnrollment(ctx, "usr_b", opts.CeremonyID, resp, "")
	requireCode(t, err, passkeys.CodeCeremonyInvalid)
	has, err := f.svc.HasPasskey(ctx, "usr_b")
	require.NoError(t, err)
	require.False(t, has)
}

func TestNeverRemoveTheLastPasskey(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	a := passkeystest.New(rpID, origin)
	one := f.enroll(t, a, "usr_a")
	requireCode(t, f.svc.RemovePasskey(ctx, "usr_a", one.Passkey.ID), passkeys.CodeLastPasskey)
	two := f.enroll(t, a, "usr_a")
	requireCode(t, f.svc.RemovePasskey(ctx, "usr_b", two.Passkey.ID), passkeys.CodeNotFound)

	// Two concurrent removals of the two passkeys: one wins, the last stays.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, id := range []string{one.Passkey.ID, two.Passkey.ID} {
		wg.Go(func() { errs[i] = f.svc.RemovePasskey(ctx, "usr_a", id) })
	}
	wg.Wait()
	left, err := f.svc.ListPasskeys(ctx, "usr_a")
	require.NoError(t, err)
	require.Len(t, left, 1)
	require.True(t, (errs[0] == nil) != (errs[1] == nil), "exactly one removal succeeds: %v", errs)
	require.Equal(t, 1, auditKinds(t, f.st)[passkeys.KindRemoved])
}

func TestRecoveryCodes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	a := passkeystest.New(rpID, origin)
	codes := f.enroll(t, a, "usr_a").RecoveryCodes
	f.enroll(t, a, "usr_a")

	_, err := f.svc.RedeemRecoveryCode(ctx, "usr_b@example.com", codes[0])
	requireCode(t, err, passkeys.CodeRecoveryInvalid)
	_, err = f.svc.RedeemRecoveryCode(ctx, "usr_a@example.com", "0000000000000000000000000")
	requireCode(t, err, passkeys.CodeRecoveryInvalid)

	// Typed as people type: lower case with hyphens.
	typed := codes[0][:13] + "-" + codes[0][13:]
	in, err := f.svc.RedeemRecoveryCode(ctx, "USR_A@example.com", lower(typed))
	require.NoError(t, err)
	require.Equal(t, "usr_a", in.UserID)
	has, err := f.svc.HasPasskey(ctx, "usr_a")
	require.NoError(t, err)
	require.False(t, has, "redeeming a code revokes every passkey")
	_, err = f.signIn(t, a)
	requireCode(t, err, passkeys.CodeAssertionInvalid)

	_, err = f.svc.RedeemRecoveryCode(ctx, "usr_a@example.com", codes[0])
	requireCode(t, err, passkeys.CodeRecoveryInvalid)
	left, err := f.svc.RecoveryCodesLeft(ctx, "usr_a")
	require.NoError(t, err)
	require.Equal(t, passkeys.RecoveryCodeCount-1, left, "the other codes stay valid")

	// Re-enrolling does not replace the codes; regenerating does, all of them.
	require.Empty(t, f.enroll(t, a, "usr_a").RecoveryCodes)
	fresh := f.regenerate(t, a, "usr_a", "ses_1")
	require.Len(t, fresh, passkeys.RecoveryCodeCount)
	_, err = f.svc.RedeemRecoveryCode(ctx, "usr_a@example.com", codes[1])
	requireCode(t, err, passkeys.CodeRecoveryInvalid)
	_, err = f.svc.RedeemRecoveryCode(ctx, "usr_a@example.com", fresh[9])
	require.NoError(t, err)
	kinds := auditKinds(t, f.st)
	require.Equal(t, 2, kinds[passkeys.KindRecoveryRedeemed])
	require.Equal(t, 2, kinds[passkeys.KindRecoveryGenerated])

	var stored int
	require.NoError(t, f.st.Pool.QueryRow(ctx, `SELECT count(*) FROM recovery_codes WHERE hash = ANY($1)`,
		[][]byte{[]byte(fresh[0]), []byte(fresh[1])}).Scan(&stored))
	require.Zero(t, stored, "codes are stored hashed, never as typed")
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func TestDecisionEvidenceVerifiesOffline(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	a := passkeystest.New(rpID, origin)
	pk := f.enroll(t, a, "usr_a").Passkey
	b := passkeys.Binding{ApprovalID: "apr_1", Tool: "send_email", ParamsHash: "ab12", Level: 1, Decision: "approve"}

	opts, err := f.svc.BeginDecision(ctx, "usr_a", "org_1", b)
	require.NoError(t, err)
	resp, err := a.Get(opts.PublicKey)
	require.NoError(t, err)

	// The ceremony binds the decision: finishing it for another one fails.
	deny := b
	deny.Decision = "deny"
	_, err = f.svc.FinishDecision(ctx, "usr_a", opts.CeremonyID, resp, deny)
	requireCode(t, err, passkeys.CodeCeremonyInvalid)

	opts, err = f.svc.BeginDecision(ctx, "usr_a", "org_1", b)
	require.NoError(t, err)
	resp, err = a.Get(opts.PublicKey)
	require.NoError(t, err)
	ev, err := f.svc.FinishDecision(ctx, "usr_a", opts.CeremonyID, resp, b)
	require.NoError(t, err)
	require.Equal(t, pk.ID, ev.PasskeyID)

	// Through JSON, as served and as handed to the offline check.
	raw, err := json.Marshal(ev)
	require.NoError(t, err)
	var back passkeys.Evidence
	require.NoError(t, json.Unmarshal(raw, &back))
	got, err := passkeys.VerifyEvidence(back, back.PublicKey)
	require.NoError(t, err)
	require.Equal(t, b, got.Binding)
	require.Equal(t, origin, got.Origin)

	for name, tamper := range map[string]func(e *passkeys.Evidence){
		"other decision": func(e *passkeys.Evidence) { e.Decision = "deny" },
		"other level":    func(e *passkeys.Evidence) { e.Level = 2 },
		"other approval": func(e *passkeys.Evidence) { e.ApprovalID = "apr_2" },
		"other params":   func(e *passkeys.Evidence) { e.ParamsHash = "ab13" },
		"other tool":     func(e *passkeys.Evidence) { e.Tool = "send_emails" },
		"other rp":       func(e *passkeys.Evidence) { e.RPID = "example.com" },
		"flipped signature": func(e *passkeys.Evidence) {
			e.Signature = append([]byte{}, e.Signature...)
			e.Signature[len(e.Signature)-1] ^= 1
		},
	} {
		e := back
		tamper(&e)
		_, err := passkeys.VerifyEvidence(e, back.PublicKey)
		require.Error(t, err, name)
	}
	other := passkeystest.New(rpID, origin)
	otherKey := f.enroll(t, other, "usr_b")
	var otherPK []byte
	require.NoError(t, f.st.Pool.QueryRow(ctx, `SELECT public_key FROM passkeys WHERE id = $1`, otherKey.Passkey.ID).Scan(&otherPK))
	_, err = passkeys.VerifyEvidence(back, otherPK)
	require.Error(t, err, "another credential's key does not verify it")
}

func TestDecisionCeremonyIsTheDecidersOwn(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	a := passkeystest.New(rpID, origin)
	f.enroll(t, a, "usr_a")
	bAuth := passkeystest.New(rpID, origin)
	f.enroll(t, bAuth, "usr_b")
	b := passkeys.Binding{ApprovalID: "apr_1", Tool: "t", ParamsHash: "", Level: 1, Decision: "approve"}
	opts, err := f.svc.BeginDecision(ctx, "usr_a", "org_1", b)
	require.NoError(t, err)
	// usr_b cannot answer usr_a's ceremony, even with a valid passkey of their own.
	_, err = bAuth.Get(opts.PublicKey)
	require.Error(t, err, "the options allow only usr_a's passkeys")
	resp, err := a.Get(opts.PublicKey)
	require.NoError(t, err)
	_, err = f.svc.FinishDecision(ctx, "usr_b", opts.CeremonyID, resp, b)
	requireCode(t, err, passkeys.CodeCeremonyInvalid)
}

// regenerate makes new recovery codes for user in session, confirmed with a.
func (f fixture) regenerate(t *testing.T, a *passkeystest.Authenticator, user, session string) []string {
	t.Helper()
	ctx := context.Background()
	opts, err := f.svc.BeginRecoveryCodes(ctx, user, session)
	require.NoError(t, err)
	resp, err := a.Get(opts.PublicKey)
	require.NoError(t, err)
	codes, err := f.svc.RegenerateRecoveryCodes(ctx, user, session, opts.CeremonyID, resp)
	require.NoError(t, err)
	return codes
}

// TestRecoveryCodesNeedTheirOwnConfirmation: new recovery codes sign in to
// the account for good, so a session alone does not make them: only the
// person's own passkey, asserting for a ceremony started for this very
// change in this very session. Every refused attempt leaves the codes as
// they were.
func TestRecoveryCodesNeedTheirOwnConfirmation(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	a, bAuth := passkeystest.New(rpID, origin), passkeystest.New(rpID, origin)
	codes := f.enroll(t, a, "usr_a").RecoveryCodes
	f.enroll(t, bAuth, "usr_b")
	start := func(user, session string) passkeys.Options {
		t.Helper()
		opts, err := f.svc.BeginRecoveryCodes(ctx, user, session)
		require.NoError(t, err)
		return opts
	}
	get := func(auth *passkeystest.Authenticator, opts passkeys.Options) []byte {
		t.Helper()
		resp, err := auth.Get(opts.PublicKey)
		require.NoError(t, err)
		return resp
	}

	// No ceremony, or none of this kind: a sign-in's or a decision's
	// assertion is not spent on recovery codes.
	_, err := f.svc.RegenerateRecoveryCodes(ctx, "usr_a", "ses_1", "", nil)
	requireCode(t, err, passkeys.CodeCeremonyInvalid)
	signIn, err := f.svc.BeginSignIn(ctx)
	require.NoError(t, err)
	_, err = f.svc.RegenerateRecoveryCodes(ctx, "usr_a", "ses_1", signIn.CeremonyID, get(a, signIn))
	requireCode(t, err, passkeys.CodeCeremonyInvalid)
	decision, err := f.svc.BeginDecision(ctx, "usr_a", "org_1", passkeys.Binding{ApprovalID: "apr_1", Level: 1, Decision: "approve"})
	require.NoError(t, err)
	_, err = f.svc.RegenerateRecoveryCodes(ctx, "usr_a", "ses_1", decision.CeremonyID, get(a, decision))
	requireCode(t, err, passkeys.CodeCeremonyInvalid)

	// Started in another session of the same person, or for another person.
	opts := start("usr_a", "ses_other")
	_, err = f.svc.RegenerateRecoveryCodes(ctx, "usr_a", "ses_1", opts.CeremonyID, get(a, opts))
	requireCode(t, err, passkeys.CodeCeremonyInvalid)
	opts = start("usr_b", "ses_1")
	_, err = f.svc.RegenerateRecoveryCodes(ctx, "usr_a", "ses_1", opts.CeremonyID, get(bAuth, opts))
	requireCode(t, err, passkeys.CodeCeremonyInvalid)
	// Someone else's passkey cannot answer the person's ceremony.
	opts = start("usr_a", "ses_1")
	_, err = bAuth.Get(opts.PublicKey)
	require.Error(t, err, "the options allow only usr_a's passkeys")
	_, err = f.svc.RegenerateRecoveryCodes(ctx, "usr_a", "ses_1", opts.CeremonyID, []byte(`{"id":"AAAA","type":"public-key"}`))
	requireCode(t, err, passkeys.CodeAssertionInvalid)
	// An assertion is spent once.
	opts = start("usr_a", "ses_1")
	resp := get(a, opts)
	fresh, err := f.svc.RegenerateRecoveryCodes(ctx, "usr_a", "ses_1", opts.CeremonyID, resp)
	require.NoError(t, err)
	require.Len(t, fresh, passkeys.RecoveryCodeCount)
	_, err = f.svc.RegenerateRecoveryCodes(ctx, "usr_a", "ses_1", opts.CeremonyID, resp)
	requireCode(t, err, passkeys.CodeCeremonyInvalid)
	require.Equal(t, 3, auditKinds(t, f.st)[passkeys.KindRecoveryGenerated], "two first enrollments and the one confirmed regeneration")
	_, err = f.svc.RedeemRecoveryCode(ctx, "usr_a@example.com", codes[0])
	requireCode(t, err, passkeys.CodeRecoveryInvalid)

	// Without a passkey there is nothing to confirm with.
	_, err = f.svc.RedeemRecoveryCode(ctx, "usr_a@example.com", fresh[0])
	require.NoError(t, err)
	_, err = f.svc.BeginRecoveryCodes(ctx, "usr_a", "ses_1")
	requireCode(t, err, "passkey_required")
}
