package passkeys_test

import (
	"cmp"
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

// enroll runs a whole enrollment ceremony for user with a: a passkey
// added to one the user has is confirmed by a, in session ses_1.
func (f fixture) enroll(t *testing.T, a *passkeystest.Authenticator, user string) passkeys.Enrolled {
	t.Helper()
	return f.enrollConfirmedBy(t, a, a, user)
}

// enrollConfirmedBy is enroll with a passkey of confirmer confirming the
// new one, when user has one already.
func (f fixture) enrollConfirmedBy(t *testing.T, a, confirmer *passkeystest.Authenticator, user string) passkeys.Enrolled {
	t.Helper()
	ctx := context.Background()
	has, err := f.svc.HasPasskey(ctx, user)
	require.NoError(t, err)
	opts, err := f.svc.BeginEnrollment(ctx, user)
	require.NoError(t, err)
	resp, err := a.Create(opts.PublicKey)
	require.NoError(t, err)
	var e passkeys.Enrolled
	if has {
		c := f.confirm(t, confirmer, "ses_1", func() (passkeys.Options, error) { return f.svc.BeginAddPasskey(ctx, user, "ses_1") })
		e, err = f.svc.FinishConfirmedEnrollment(ctx, user, c, opts.CeremonyID, resp, "")
	} else {
		e, err = f.svc.FinishEnrollment(ctx, user, opts.CeremonyID, resp, "")
	}
	require.NoError(t, err)
	return e
}

// confirm answers the confirmation ceremony begin starts with a, as
// session answers it.
func (f fixture) confirm(t *testing.T, a *passkeystest.Authenticator, session string, begin func() (passkeys.Options, error)) passkeys.Confirmation {
	t.Helper()
	opts, err := begin()
	require.NoError(t, err)
	resp, err := a.Get(opts.PublicKey)
	require.NoError(t, err)
	return passkeys.Confirmation{SessionID: session, CeremonyID: opts.CeremonyID, Response: resp}
}

// removal is a's confirmation, in session ses_1, of removing user's passkey id.
func (f fixture) removal(t *testing.T, a *passkeystest.Authenticator, user, id string) passkeys.Confirmation {
	t.Helper()
	return f.confirm(t, a, "ses_1", func() (passkeys.Options, error) {
		return f.svc.BeginRemovePasskey(context.Background(), user, "ses_1", id)
	})
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

	eopts, err := f.svc.BeginEnrollment(ctx, "usr_b")
	require.NoError(t, err)
	eresp, err := a.Create(eopts.PublicKey)
	require.NoError(t, err)
	_, err = f.svc.FinishEnrollment(ctx, "usr_b", eopts.CeremonyID, eresp, "")
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
	a, b := passkeystest.New(rpID, origin), passkeystest.New(rpID, origin)
	one := f.enroll(t, a, "usr_a")
	f.enroll(t, b, "usr_b")
	// The only passkey, or someone else's, is refused before the person is
	// asked for an assertion.
	_, err := f.svc.BeginRemovePasskey(ctx, "usr_a", "ses_1", one.Passkey.ID)
	requireCode(t, err, passkeys.CodeLastPasskey)
	two := f.enroll(t, a, "usr_a")
	_, err = f.svc.BeginRemovePasskey(ctx, "usr_b", "ses_1", two.Passkey.ID)
	requireCode(t, err, passkeys.CodeNotFound)

	// A confirmation made while the account had passkeys it has no more is
	// void: the options offered them, and the relying party refuses an
	// assertion for options listing passkeys the person does not own.
	keep := passkeystest.New(rpID, origin)
	three := f.enrollConfirmedBy(t, keep, a, "usr_a")
	late := f.removal(t, keep, "usr_a", three.Passkey.ID)
	require.NoError(t, f.svc.RemovePasskey(ctx, "usr_a", one.Passkey.ID, f.removal(t, a, "usr_a", one.Passkey.ID)))
	require.NoError(t, f.svc.RemovePasskey(ctx, "usr_a", two.Passkey.ID, f.removal(t, a, "usr_a", two.Passkey.ID)))
	requireCode(t, f.svc.RemovePasskey(ctx, "usr_a", three.Passkey.ID, late), passkeys.CodeAssertionInvalid)

	// Two concurrent removals of the two passkeys: one wins, the last stays.
	// The other finds one passkey left (under the lock that orders them), or
	// its confirmation void, the passkey set having changed.
	four := f.enrollConfirmedBy(t, a, keep, "usr_a")
	var wg sync.WaitGroup
	errs := make([]error, 2)
	confirmed := []passkeys.Confirmation{f.removal(t, keep, "usr_a", three.Passkey.ID), f.removal(t, a, "usr_a", four.Passkey.ID)}
	for i, id := range []string{three.Passkey.ID, four.Passkey.ID} {
		wg.Go(func() { errs[i] = f.svc.RemovePasskey(ctx, "usr_a", id, confirmed[i]) })
	}
	wg.Wait()
	left, err := f.svc.ListPasskeys(ctx, "usr_a")
	require.NoError(t, err)
	require.Len(t, left, 1)
	require.True(t, (errs[0] == nil) != (errs[1] == nil), "exactly one removal succeeds: %v", errs)
	var refused *passkeys.Error
	require.ErrorAs(t, cmp.Or(errs[0], errs[1]), &refused)
	require.Contains(t, []string{passkeys.CodeLastPasskey, passkeys.CodeAssertionInvalid}, refused.Code)
	require.Equal(t, 3, auditKinds(t, f.st)[passkeys.KindRemoved])
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

// TestPasskeyChangesNeedTheirOwnConfirmation: a passkey added to an account
// that has one, or a passkey removed, outlives or strips the owner's
// sign-in, so a session alone (a stolen cookie) does neither: only an
// existing passkey of the person, asserting for a ceremony started for this
// very change (this passkey, for a removal) in this very session.
func TestPasskeyChangesNeedTheirOwnConfirmation(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	a, bAuth, fresh := passkeystest.New(rpID, origin), passkeystest.New(rpID, origin), passkeystest.New(rpID, origin)
	one := f.enroll(t, a, "usr_a")
	spare := f.enroll(t, a, "usr_a")
	f.enroll(t, bAuth, "usr_b")
	register := func() (string, []byte) {
		t.Helper()
		opts, err := f.svc.BeginEnrollment(ctx, "usr_a")
		require.NoError(t, err)
		resp, err := fresh.Create(opts.PublicKey)
		require.NoError(t, err)
		return opts.CeremonyID, resp
	}
	add := func(session string) func() (passkeys.Options, error) {
		return func() (passkeys.Options, error) { return f.svc.BeginAddPasskey(ctx, "usr_a", session) }
	}
	count := func() int {
		keys, err := f.svc.ListPasskeys(ctx, "usr_a")
		require.NoError(t, err)
		return len(keys)
	}

	// Without a confirmation the account's next passkey is refused.
	id, resp := register()
	_, err := f.svc.FinishEnrollment(ctx, "usr_a", id, resp, "")
	requireCode(t, err, passkeys.CodeAssertionRequired)
	// Confirmations of another kind, session, change or person are refused.
	signIn, err := f.svc.BeginSignIn(ctx)
	require.NoError(t, err)
	signInResp, err := a.Get(signIn.PublicKey)
	require.NoError(t, err)
	wrong := map[string]passkeys.Confirmation{
		"recovery codes": f.confirm(t, a, "ses_1", func() (passkeys.Options, error) { return f.svc.BeginRecoveryCodes(ctx, "usr_a", "ses_1") }),
		"a decision": f.confirm(t, a, "ses_1", func() (passkeys.Options, error) {
			return f.svc.BeginDecision(ctx, "usr_a", "org_1", passkeys.Binding{ApprovalID: "apr_1", Level: 1, Decision: "approve"})
		}),
		"a sign-in":       {SessionID: "ses_1", CeremonyID: signIn.CeremonyID, Response: signInResp},
		"another session": f.confirm(t, a, "ses_1", add("ses_other")),
		"a removal":       f.removal(t, a, "usr_a", one.Passkey.ID),
		"another person": f.confirm(t, bAuth, "ses_1", func() (passkeys.Options, error) {
			return f.svc.BeginAddPasskey(ctx, "usr_b", "ses_1")
		}),
		"none": {SessionID: "ses_1"},
	}
	for what, c := range wrong {
		id, resp := register()
		_, err = f.svc.FinishConfirmedEnrollment(ctx, "usr_a", c, id, resp, "")
		requireCode(t, err, passkeys.CodeCeremonyInvalid)
		require.Equal(t, 2, count(), what)
	}
	// A confirmation for adding one is spent on new recovery codes neither.
	c := f.confirm(t, a, "ses_1", add("ses_1"))
	_, err = f.svc.RegenerateRecoveryCodes(ctx, "usr_a", "ses_1", c.CeremonyID, c.Response)
	requireCode(t, err, passkeys.CodeCeremonyInvalid)

	// Confirmed, the passkey is added, and the confirmation is spent.
	c = f.confirm(t, a, "ses_1", add("ses_1"))
	id, resp = register()
	three, err := f.svc.FinishConfirmedEnrollment(ctx, "usr_a", c, id, resp, "phone")
	require.NoError(t, err)
	require.False(t, three.First)
	require.Empty(t, three.RecoveryCodes)
	require.Equal(t, "phone", three.Passkey.Name)
	id, resp = register()
	_, err = f.svc.FinishConfirmedEnrollment(ctx, "usr_a", c, id, resp, "")
	requireCode(t, err, passkeys.CodeCeremonyInvalid)
	require.Equal(t, 3, count())

	// A removal's confirmation names the passkey, the session and the change.
	wrong = map[string]passkeys.Confirmation{
		"none":            {SessionID: "ses_1"},
		"another passkey": f.removal(t, a, "usr_a", one.Passkey.ID),
		"another session": f.confirm(t, a, "ses_1", func() (passkeys.Options, error) {
			return f.svc.BeginRemovePasskey(ctx, "usr_a", "ses_other", three.Passkey.ID)
		}),
		"an addition":    f.confirm(t, a, "ses_1", add("ses_1")),
		"recovery codes": f.confirm(t, a, "ses_1", func() (passkeys.Options, error) { return f.svc.BeginRecoveryCodes(ctx, "usr_a", "ses_1") }),
	}
	for what, c := range wrong {
		requireCode(t, f.svc.RemovePasskey(ctx, "usr_a", three.Passkey.ID, c), passkeys.CodeCeremonyInvalid)
		require.Equal(t, 3, count(), what)
	}
	// Spent once: a removal's confirmation removes nothing twice.
	c = f.removal(t, a, "usr_a", spare.Passkey.ID)
	require.NoError(t, f.svc.RemovePasskey(ctx, "usr_a", spare.Passkey.ID, c))
	requireCode(t, f.svc.RemovePasskey(ctx, "usr_a", spare.Passkey.ID, c), passkeys.CodeCeremonyInvalid)
	// The new passkey itself may confirm removing the old one.
	require.NoError(t, f.svc.RemovePasskey(ctx, "usr_a", one.Passkey.ID, f.removal(t, fresh, "usr_a", one.Passkey.ID)))
	require.Equal(t, 1, count())
	require.Zero(t, auditKinds(t, f.st)[passkeys.KindPasskeyChangeRefused], "no assertion was refused, only misdirected ceremonies")
}

// TestRefusedConfirmationsAreAudited: an assertion made for an account change
// that does not verify, or whose passkey looks cloned, is refused and
// audited once, with the change and the reason, as a refused decision
// signature is; the refusal consumes the ceremony.
func TestRefusedConfirmationsAreAudited(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	a := passkeystest.New(rpID, origin)
	one := f.enroll(t, a, "usr_a")
	two := f.enroll(t, a, "usr_a")
	type refusal struct{ kind, subject, outcome, details string }
	refusals := func() []refusal {
		t.Helper()
		rows, err := f.st.Pool.Query(ctx, `SELECT kind, subject, outcome, details::text FROM audit_events
			WHERE kind IN ($1, $2)`, passkeys.KindPasskeyChangeRefused, passkeys.KindRecoveryConfirmationRefused)
		require.NoError(t, err)
		defer rows.Close()
		var out []refusal
		for rows.Next() {
			var r refusal
			require.NoError(t, rows.Scan(&r.kind, &r.subject, &r.outcome, &r.details))
			out = append(out, r)
		}
		require.NoError(t, rows.Err())
		return out
	}
	id := func() (string, []byte) {
		t.Helper()
		opts, err := f.svc.BeginEnrollment(ctx, "usr_a")
		require.NoError(t, err)
		resp, err := passkeystest.New(rpID, origin).Create(opts.PublicKey)
		require.NoError(t, err)
		return opts.CeremonyID, resp
	}

	// An assertion that lags behind the passkey's counter (a clone).
	_, err := f.signIn(t, a)
	require.NoError(t, err)
	opts, err := f.svc.BeginAddPasskey(ctx, "usr_a", "ses_1")
	require.NoError(t, err)
	resp, err := a.GetReplayingCounter(opts.PublicKey)
	require.NoError(t, err)
	cer, att := id()
	_, err = f.svc.FinishConfirmedEnrollment(ctx, "usr_a", passkeys.Confirmation{SessionID: "ses_1", CeremonyID: opts.CeremonyID, Response: resp}, cer, att, "")
	requireCode(t, err, passkeys.CodeCloneWarning)

	// Assertions without user verification do not verify.
	a.WithoutUserVerification()
	opts, err = f.svc.BeginRemovePasskey(ctx, "usr_a", "ses_1", one.Passkey.ID)
	require.NoError(t, err)
	resp, err = a.Get(opts.PublicKey)
	require.NoError(t, err)
	requireCode(t, f.svc.RemovePasskey(ctx, "usr_a", one.Passkey.ID, passkeys.Confirmation{SessionID: "ses_1", CeremonyID: opts.CeremonyID, Response: resp}),
		passkeys.CodeAssertionInvalid)
	opts, err = f.svc.BeginRecoveryCodes(ctx, "usr_a", "ses_1")
	require.NoError(t, err)
	resp, err = a.Get(opts.PublicKey)
	require.NoError(t, err)
	_, err = f.svc.RegenerateRecoveryCodes(ctx, "usr_a", "ses_1", opts.CeremonyID, resp)
	requireCode(t, err, passkeys.CodeAssertionInvalid)
	// The refused ceremony is spent.
	_, err = f.svc.RegenerateRecoveryCodes(ctx, "usr_a", "ses_1", opts.CeremonyID, resp)
	requireCode(t, err, passkeys.CodeCeremonyInvalid)

	require.ElementsMatch(t, []refusal{
		{passkeys.KindPasskeyChangeRefused, "usr_a", "refused", `{"change": "add", "reason": "passkey_clone_warning"}`},
		{passkeys.KindPasskeyChangeRefused, one.Passkey.ID, "refused", `{"change": "remove", "reason": "assertion_invalid"}`},
		{passkeys.KindRecoveryConfirmationRefused, "usr_a", "refused", `{"reason": "assertion_invalid"}`},
	}, refusals(), "one entry per refused assertion, none for the spent ceremony")
	keys, err := f.svc.ListPasskeys(ctx, "usr_a")
	require.NoError(t, err)
	require.Len(t, keys, 2, "nothing was added or removed")
	require.Equal(t, two.Passkey.ID, keys[1].ID)
}
