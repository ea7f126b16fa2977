package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/api/passkeys"
	"oakallow/api/passkeys/passkeystest"
)

// The dev origin: testConfig's PublicURL defaults to http://localhost:8080,
// so the relying party is "localhost".
const testOrigin = "http://localhost:8080"

// enrollREST enrolls a passkey through the API with session headers hdr.
func (e *testEnv) enrollREST(a *passkeystest.Authenticator, hdr map[string]string) (int, []byte) {
	e.t.Helper()
	opts := expectAs[passkeys.Options](e, http.StatusOK, http.MethodPost, "/v1/me/passkeys/options", hdr, nil)
	resp, err := a.Create(opts.PublicKey)
	require.NoError(e.t, err)
	return e.asSession(http.MethodPost, "/v1/me/passkeys", hdr,
		map[string]any{"ceremony_id": opts.CeremonyID, "credential": json.RawMessage(resp), "name": "laptop"})
}

// confirmREST answers the confirmation options of optionsPath, asked for as
// the session hdr, with a: the body (or confirmation) the change takes.
func (e *testEnv) confirmREST(a *passkeystest.Authenticator, hdr map[string]string, optionsPath string) map[string]any {
	e.t.Helper()
	opts := expectAs[passkeys.Options](e, http.StatusOK, http.MethodPost, optionsPath, hdr, nil)
	resp, err := a.Get(opts.PublicKey)
	require.NoError(e.t, err)
	return map[string]any{"ceremony_id": opts.CeremonyID, "credential": json.RawMessage(resp)}
}

// addPasskeyREST enrolls fresh as another passkey of the session hdr's
// account, confirmed by its passkey on existing.
func (e *testEnv) addPasskeyREST(fresh, existing *passkeystest.Authenticator, hdr map[string]string) (int, []byte) {
	e.t.Helper()
	confirmation := e.confirmREST(existing, hdr, "/v1/me/passkeys/add-options")
	opts := expectAs[passkeys.Options](e, http.StatusOK, http.MethodPost, "/v1/me/passkeys/options", hdr, nil)
	resp, err := fresh.Create(opts.PublicKey)
	require.NoError(e.t, err)
	return e.asSession(http.MethodPost, "/v1/me/passkeys", hdr, map[string]any{"ceremony_id": opts.CeremonyID,
		"credential": json.RawMessage(resp), "name": "phone", "confirmation": confirmation})
}

// removePasskeyREST removes passkey id as the session hdr, confirmed by a.
func (e *testEnv) removePasskeyREST(a *passkeystest.Authenticator, hdr map[string]string, id string) (int, []byte) {
	e.t.Helper()
	return e.asSession(http.MethodDelete, "/v1/me/passkeys/"+id, hdr,
		e.confirmREST(a, hdr, "/v1/me/passkeys/"+id+"/remove-options"))
}

// passkeySignIn signs in with a through the API and returns the status and body.
func (e *testEnv) passkeySignIn(a *passkeystest.Authenticator) (int, []byte, []byte) {
	e.t.Helper()
	opts := expectAs[passkeys.Options](e, http.StatusOK, http.MethodPost, "/v1/auth/passkey/options", nil, nil)
	resp, err := a.Get(opts.PublicKey)
	require.NoError(e.t, err)
	body := map[string]any{"ceremony_id": opts.CeremonyID, "credential": json.RawMessage(resp), "client": "app"}
	status, raw := e.asSession(http.MethodPost, "/v1/auth/passkey", nil, body)
	replay, _ := json.Marshal(body)
	return status, raw, replay
}

type enrolledAnswer struct {
	Passkey       passkeys.Passkey `json:"passkey"`
	RecoveryCodes []string         `json:"recovery_codes"`
	Session       *SessionInfo     `json:"session"`
}

func TestPasskeyEnrollmentSignInAndRecovery(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	user := e.person(RoleReviewer)
	a := passkeystest.New("localhost", testOrigin)

	// After the first e-mail sign-in nothing works but enrollment.
	enrolling := bearer(e.signIn(user, false).Token)
	status, raw := e.asSession(http.MethodGet, "/v1/approvals", enrolling, nil)
	requireStatusCode(t, http.StatusForbidden, CodePasskeyRequired, status, raw)

	status, raw = e.enrollREST(a, enrolling)
	require.Equal(t, http.StatusCreated, status, string(raw))
	var first enrolledAnswer
	require.NoError(t, json.Unmarshal(raw, &first))
	require.Len(t, first.RecoveryCodes, 10)
	require.NotNil(t, first.Session)
	require.Equal(t, sessionStateFull, first.Session.State)
	// The session became full under a new token; the old one stops working.
	status, raw = e.asSession(http.MethodGet, "/v1/me", enrolling, nil)
	requireStatusCode(t, http.StatusUnauthorized, CodeInvalidSession, status, raw)
	full := bearer(first.Session.Token)
	status, raw = e.asSession(http.MethodGet, "/v1/approvals", full, nil)
	require.Equal(t, http.StatusOK, status, string(raw))

	// Discoverable sign-in; a replayed assertion is refused.
	status, raw, replay := e.passkeySignIn(a)
	require.Equal(t, http.StatusOK, status, string(raw))
	var signedIn SessionInfo
	require.NoError(t, json.Unmarshal(raw, &signedIn))
	require.Equal(t, sessionStateFull, signedIn.State)
	status, raw = e.asSession(http.MethodPost, "/v1/auth/passkey", nil, replay)
	requireStatusCode(t, http.StatusUnauthorized, passkeys.CodeCeremonyInvalid, status, raw)

	// Never the last passkey: its removal is refused before the person is
	// asked for an assertion. A second one (confirmed by the first) can go.
	status, raw = e.asSession(http.MethodPost, "/v1/me/passkeys/"+first.Passkey.ID+"/remove-options", full, nil)
	requireStatusCode(t, http.StatusConflict, passkeys.CodeLastPasskey, status, raw)
	status, raw = e.addPasskeyREST(a, a, full)
	require.Equal(t, http.StatusCreated, status, string(raw))
	var second enrolledAnswer
	require.NoError(t, json.Unmarshal(raw, &second))
	require.Empty(t, second.RecoveryCodes, "recovery codes are shown once")
	require.Nil(t, second.Session, "a full session stays as it is")
	status, raw = e.removePasskeyREST(a, full, second.Passkey.ID)
	require.Equal(t, http.StatusNoContent, status, string(raw))

	// An e-mail code alone never adds a passkey to an account that has one.
	status, raw = e.asSession(http.MethodPost, "/v1/me/passkeys/options", bearer(e.signIn(user, false).Token), nil)
	requireStatusCode(t, http.StatusForbidden, CodePasskeyRequired, status, raw)

	// Recovery: wrong code, then a right one — every passkey and session is
	// revoked and the new session may only enroll.
	status, raw = e.asSession(http.MethodPost, "/v1/auth/recovery", nil,
		map[string]any{"email": user + "@example.com", "code": "0000000000000000000000000Z", "client": "app"})
	requireStatusCode(t, http.StatusUnauthorized, passkeys.CodeRecoveryInvalid, status, raw)
	status, raw = e.asSession(http.MethodPost, "/v1/auth/recovery", nil,
		map[string]any{"email": user + "@example.com", "code": first.RecoveryCodes[3], "client": "app"})
	require.Equal(t, http.StatusOK, status, string(raw))
	var recovered SessionInfo
	require.NoError(t, json.Unmarshal(raw, &recovered))
	require.Equal(t, sessionStateEnrollment, recovered.State)
	status, raw = e.asSession(http.MethodGet, "/v1/me", full, nil)
	requireStatusCode(t, http.StatusUnauthorized, CodeInvalidSession, status, raw)
	status, raw, _ = e.passkeySignIn(a)
	requireStatusCode(t, http.StatusUnauthorized, passkeys.CodeAssertionInvalid, status, raw)
	rec := bearer(recovered.Token)
	status, raw = e.asSession(http.MethodGet, "/v1/approvals", rec, nil)
	requireStatusCode(t, http.StatusForbidden, CodePasskeyRequired, status, raw)
	status, raw = e.enrollREST(a, rec)
	require.Equal(t, http.StatusCreated, status, string(raw))
	status, raw = e.asSession(http.MethodPost, "/v1/auth/recovery", nil,
		map[string]any{"email": user + "@example.com", "code": first.RecoveryCodes[3], "client": "app"})
	requireStatusCode(t, http.StatusUnauthorized, passkeys.CodeRecoveryInvalid, status, raw)

	for kind, n := range map[string]int{passkeys.KindEnrolled: 3, passkeys.KindRemoved: 1, passkeys.KindSignedIn: 1,
		passkeys.KindRecoveryGenerated: 1, passkeys.KindRecoveryRedeemed: 1} {
		var got int
		require.NoError(t, e.st.Pool.QueryRow(context.Background(),
			`SELECT count(*) FROM audit_events WHERE kind = $1 AND actor_id = $2`, kind, user).Scan(&got))
		require.Equal(t, n, got, kind)
	}
}

func TestPasskeyEndpointsRefuseBadInput(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	for name, body := range map[string]any{
		"unknown ceremony":  map[string]any{"ceremony_id": "cer_nope", "credential": map[string]any{"id": "x"}},
		"garbage response":  map[string]any{"ceremony_id": "cer_nope", "credential": map[string]any{"response": 5}},
		"missing ceremony":  map[string]any{"credential": map[string]any{}},
		"credential string": map[string]any{"ceremony_id": "c", "credential": "abc"},
	} {
		status, raw := e.asSession(http.MethodPost, "/v1/auth/passkey", nil, body)
		require.GreaterOrEqual(t, status, 400, name)
		require.Less(t, status, 500, "%s: %s", name, raw)
	}
	opts := expectAs[passkeys.Options](e, http.StatusOK, http.MethodPost, "/v1/auth/passkey/options", nil, nil)
	status, raw := e.asSession(http.MethodPost, "/v1/auth/passkey", nil,
		map[string]any{"ceremony_id": opts.CeremonyID, "credential": map[string]any{"id": "AAAA", "type": "public-key"}})
	requireStatusCode(t, http.StatusUnauthorized, passkeys.CodeAssertionInvalid, status, raw)

	// The confirmed passkey changes refuse bad input with 4xx problems too.
	r := e.enrolledReviewer(RoleReviewer)
	long := strings.Repeat("x", 65)
	for name, c := range map[string]struct {
		method, path string
		body         any
	}{
		"remove-options, unknown passkey": {http.MethodPost, "/v1/me/passkeys/pk_nope/remove-options", nil},
		"remove-options, long id":         {http.MethodPost, "/v1/me/passkeys/" + long + "/remove-options", nil},
		"remove, long id":                 {http.MethodDelete, "/v1/me/passkeys/" + long, nil},
		"remove, unknown ceremony": {http.MethodDelete, "/v1/me/passkeys/pk_nope",
			map[string]any{"ceremony_id": "cer_nope", "credential": map[string]any{"id": "x"}}},
		"remove, garbage response": {http.MethodDelete, "/v1/me/passkeys/pk_nope",
			map[string]any{"ceremony_id": "cer_nope", "credential": map[string]any{"response": 5}}},
		"remove, credential string": {http.MethodDelete, "/v1/me/passkeys/pk_nope", map[string]any{"ceremony_id": "c", "credential": "abc"}},
		"remove, unknown field":     {http.MethodDelete, "/v1/me/passkeys/pk_nope", map[string]any{"ceremony_id": "c", "extra": 1}},
		"remove, long ceremony": {http.MethodDelete, "/v1/me/passkeys/pk_nope",
			map[string]any{"ceremony_id": strings.Repeat("c", 101), "credential": map[string]any{"id": "x"}}},
		"add, confirmation string": {http.MethodPost, "/v1/me/passkeys",
			map[string]any{"ceremony_id": "cer_nope", "credential": map[string]any{"id": "x"}, "confirmation": "abc"}},
		"add, unknown confirmation": {http.MethodPost, "/v1/me/passkeys", map[string]any{"ceremony_id": "cer_nope",
			"credential": map[string]any{"id": "x"}, "confirmation": map[string]any{"ceremony_id": "cer_nope", "credential": map[string]any{"id": "x"}}}},
	} {
		status, raw := e.asSession(c.method, c.path, r.hdr, c.body)
		require.GreaterOrEqual(t, status, 400, name)
		require.Less(t, status, 500, "%s: %s", name, raw)
	}
}

// reviewer is a person with a passkey and a full session.
type reviewer struct {
	id   string
	auth *passkeystest.Authenticator
	hdr  map[string]string
}

func (e *testEnv) enrolledReviewer(role string) reviewer {
	e.t.Helper()
	r := reviewer{id: e.person(role), auth: passkeystest.New("localhost", testOrigin)}
	status, raw := e.enrollREST(r.auth, bearer(e.signIn(r.id, false).Token))
	require.Equal(e.t, http.StatusCreated, status, string(raw))
	var got enrolledAnswer
	require.NoError(e.t, json.Unmarshal(raw, &got))
	r.hdr = bearer(got.Session.Token)
	return r
}

type decideOptionsAnswer struct {
	passkeys.Options
	Binding passkeys.Binding `json:"binding"`
}

// decideWithPasskey asks for options as r and decides with an assertion for them.
func (e *testEnv) decideWithPasskey(r reviewer, id, decision string) (int, []byte) {
	e.t.Helper()
	status, raw := e.asSession(http.MethodPost, "/v1/approvals/"+id+"/decide/options", r.hdr, map[string]any{"decision": decision})
	if status != http.StatusOK {
		return status, raw
	}
	var opts decideOptionsAnswer
	require.NoError(e.t, json.Unmarshal(raw, &opts))
	resp, err := r.auth.Get(opts.PublicKey)
	require.NoError(e.t, err)
	return e.asSession(http.MethodPost, "/v1/approvals/"+id+"/decide", r.hdr,
		map[string]any{"decision": decision, "ceremony_id": opts.CeremonyID, "credential": json.RawMessage(resp)})
}

type evidenceAnswer struct {
	Items                  []passkeys.Evidence `json:"items"`
	ManagementKeyDecisions []UnsignedDecision  `json:"management_key_decisions"`
}

func testReviewerDecidesWithPasskey(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	toolID := e.seedTool("wire_money", "", nil)
	_, err := s.st.Pool.Exec(context.Background(), `UPDATE tools SET requires_second_approval = true WHERE id = $1`, toolID)
	require.NoError(t, err)
	require.NoError(t, s.st.NotifyChange(context.Background(), "policy:"+e.boot.OrgID))
	first, second, outsider := e.enrolledReviewer(RoleReviewer), e.enrolledReviewer(RoleReviewer), e.enrolledReviewer(RoleReviewer)
	e.setApproverGroup(1, []string{first.id, second.id})
	e.setApproverGroup(2, []string{first.id, second.id})
	created := e.requestApproval(map[string]any{"tool": "wire_money", "reasoning": "pay the supplier", "parameters": map[string]any{"amount": 120}})
	require.Equal(t, 2, created.Levels)
	path := "/v1/approvals/" + created.ID

	// Outside the group: no options. A session without an assertion: refused.
	status, raw := e.decideWithPasskey(outsider, created.ID, "approve")
	requireStatusCode(t, http.StatusForbidden, CodeNotAnApprover, status, raw)
	status, raw = e.asSession(http.MethodPost, path+"/decide", first.hdr, map[string]any{"decision": "approve"})
	requireStatusCode(t, http.StatusUnauthorized, CodePasskeyAssertionNeeded, status, raw)

	// Options signed for "approve" cannot carry a "deny".
	opts := expectAs[decideOptionsAnswer](e, http.StatusOK, http.MethodPost, path+"/decide/options", first.hdr, map[string]any{"decision": "approve"})
	require.Equal(t, passkeys.Binding{ApprovalID: created.ID, Tool: "wire_money", ParamsHash: opts.Binding.ParamsHash, Level: 1, Decision: "approve"}, opts.Binding)
	require.NotEmpty(t, opts.Binding.ParamsHash)
	resp, err := first.auth.Get(opts.PublicKey)
	require.NoError(t, err)
	status, raw = e.asSession(http.MethodPost, path+"/decide", first.hdr,
		map[string]any{"decision": "deny", "ceremony_id": opts.CeremonyID, "credential": json.RawMessage(resp)})
	requireStatusCode(t, http.StatusUnauthorized, passkeys.CodeCeremonyInvalid, status, raw)

	status, raw = e.decideWithPasskey(first, created.ID, "approve")
	require.Equal(t, http.StatusOK, status, string(raw))
	var l1 Approval
	require.NoError(t, json.Unmarshal(raw, &l1))
	require.Equal(t, "pending", l1.Status)
	require.Equal(t, 2, l1.Level)
	require.Equal(t, DeciderIdentity{Kind: "user", ID: first.id, Display: RoleReviewer}, l1.Decisions[0].Decider)

	// Whoever decided level 1 decides nothing at level 2, either way.
	for _, d := range []string{"approve", "deny"} {
		status, raw = e.decideWithPasskey(first, created.ID, d)
		requireStatusCode(t, http.StatusForbidden, CodeSameApprover, status, raw)
	}
	status, raw = e.decideWithPasskey(second, created.ID, "approve")
	require.Equal(t, http.StatusOK, status, string(raw))
	var final Approval
	require.NoError(t, json.Unmarshal(raw, &final))
	require.Equal(t, "approved", final.Status)
	require.NotEmpty(t, final.Token, "the agent gets its token")

	// Evidence of both decisions verifies offline, each with its reviewer's key.
	ev := expect[evidenceAnswer](e, http.StatusOK, http.MethodGet, path+"/evidence", e.boot.StandardKey, nil)
	require.Len(t, ev.Items, 2)
	require.Empty(t, ev.ManagementKeyDecisions)
	for i, item := range ev.Items {
		got, err := passkeys.VerifyEvidence(item, item.PublicKey)
		require.NoError(t, err)
		require.Equal(t, i+1, got.Level)
		require.Equal(t, "approve", got.Decision)
		require.Equal(t, created.ID, got.ApprovalID)
		require.Equal(t, []string{first.id, second.id}[i], item.UserID)
	}
	// The refused attempts left evidence rows that are never served.
	require.Equal(t, 2, e.count(`SELECT count(*) FROM decision_evidence e JOIN approvals a ON a.id = e.approval_id WHERE a.org_id = $1`))
	require.Equal(t, 2, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = $2`, passkeys.KindDecisionSigned))

	// A management-key decision, where the org allows it, is labelled as one.
	e.allowDecide(true)
	single := e.requestApproval(map[string]any{"tool": "wire_money", "reasoning": "again"})
	l1k := expect[Approval](e, http.StatusOK, http.MethodPost, "/v1/approvals/"+single.ID+"/decide", e.boot.ManagementKey, map[string]any{"decision": "approve"})
	require.Equal(t, "management_key", l1k.Decisions[0].Decider.Kind)
	status, raw = e.decideWithPasskey(second, single.ID, "deny")
	require.Equal(t, http.StatusOK, status, string(raw))
	ev = expect[evidenceAnswer](e, http.StatusOK, http.MethodGet, "/v1/approvals/"+single.ID+"/evidence", e.boot.StandardKey, nil)
	require.Len(t, ev.Items, 1)
	require.Equal(t, "deny", ev.Items[0].Decision)
	require.Len(t, ev.ManagementKeyDecisions, 1)
	require.Equal(t, "management_key", ev.ManagementKeyDecisions[0].Decider.Kind)
}

func TestPasskeyConfigFollowsThePublicURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url, rpID, origin string
	}{
		{"http://localhost:8080", "localhost", "http://localhost:8080"},
		{"http://127.0.0.1:8080", "localhost", "http://localhost:8080"},
		{"https://oakallow.example.com", "oakallow.example.com", "https://oakallow.example.com"},
	} {
		pc := passkeyConfig(Config{PublicURL: tc.url})
		require.NoError(t, pc.Validate(), tc.url)
		require.Equal(t, tc.rpID, pc.RPID, tc.url)
		require.Equal(t, []string{tc.origin}, pc.Origins, tc.url)
	}
	// Plain http elsewhere cannot host passkeys: the server runs, with passkeys off.
	cfg := testConfig()
	cfg.PublicURL = "http://oakallow.test:8080"
	st, boot := bootstrappedStore(t)
	e := startEnvWith(t, cfg, Deps{Store: st}, boot)
	status, raw := e.asSession(http.MethodPost, "/v1/auth/passkey/options", nil, nil)
	requireStatusCode(t, http.StatusServiceUnavailable, "passkeys_unavailable", status, raw)
	// Set explicitly, a bad relying party stops the server.
	cfg.Passkeys = passkeys.Config{RPID: "example.com", Origins: []string{"http://example.com"}}
	_, err := NewServer(cfg, Deps{Store: st, Keyring: testKeyring, SecretBox: testBox(t)})
	require.ErrorContains(t, err, "must be https")
}

// testRequesterCannotDecide: a person who requested an approval cannot
// decide it, even as a member of the approver group; someone else can.
func testRequesterCannotDecide(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.seedTool("wire_money", "", nil)
	requester, other := e.enrolledReviewer(RoleReviewer), e.enrolledReviewer(RoleReviewer)
	e.setApproverGroup(1, []string{requester.id, other.id})
	created := e.requestApproval(map[string]any{"tool": "wire_money", "reasoning": "pay", "parameters": map[string]any{"amount": 1}})
	// Approvals are requested with standard keys today; one a person
	// requested names them as its creator.
	tag, err := s.st.Pool.Exec(context.Background(),
		`UPDATE approvals SET created_by_kind = 'user', created_by_id = $2 WHERE reference = $1 OR id = $1`, created.ID, requester.id)
	require.NoError(t, err)
	require.EqualValues(t, 1, tag.RowsAffected())

	path := "/v1/approvals/" + created.ID
	status, raw := e.asSession(http.MethodPost, path+"/decide/options", requester.hdr, map[string]any{"decision": "approve"})
	requireStatusCode(t, http.StatusForbidden, CodeRequesterCannotDecide, status, raw)
	status, raw = e.decideWithPasskey(requester, created.ID, "approve")
	requireStatusCode(t, http.StatusForbidden, CodeRequesterCannotDecide, status, raw)
	var st string
	require.NoError(t, s.st.Pool.QueryRow(context.Background(),
		`SELECT status FROM approvals WHERE reference = $1 OR id = $1`, created.ID).Scan(&st))
	require.Equal(t, "pending", st)

	status, raw = e.decideWithPasskey(other, created.ID, "approve")
	require.Equal(t, http.StatusOK, status, string(raw))
}

// testReviewerIdempotencyKeyPerApproval: an Idempotency-Key is free again
// once its first answer is no longer kept (24 h). A reviewer who uses it
// again on another approval makes another decision, and that decision keeps
// its own passkey evidence: the evidence of a decision is never the one of
// another approval, nor missing.
func testReviewerIdempotencyKeyPerApproval(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.seedTool("wire_money", "", nil)
	r := e.enrolledReviewer(RoleReviewer)
	decide := func(id string) {
		t.Helper()
		opts := expectAs[decideOptionsAnswer](e, http.StatusOK, http.MethodPost, "/v1/approvals/"+id+"/decide/options", r.hdr,
			map[string]any{"decision": "approve"})
		resp, err := r.auth.Get(opts.PublicKey)
		require.NoError(t, err)
		got := expectAs[Approval](e, http.StatusOK, http.MethodPost, "/v1/approvals/"+id+"/decide", with(r.hdr, "Idempotency-Key", "decide-once"),
			map[string]any{"decision": "approve", "ceremony_id": opts.CeremonyID, "credential": json.RawMessage(resp)})
		require.Equal(t, "approved", got.Status)
	}
	first := e.requestApproval(map[string]any{"tool": "wire_money", "reasoning": "pay", "parameters": map[string]any{"amount": 1}})
	second := e.requestApproval(map[string]any{"tool": "wire_money", "reasoning": "pay", "parameters": map[string]any{"amount": 2}})
	decide(first.ID)
	// A day later the key counts as unused.
	_, err := s.st.Pool.Exec(context.Background(), `UPDATE idempotency_keys SET created_at = created_at - interval '25 hours'
		WHERE key = 'decide-once' AND principal_id = $1`, r.id+"/"+e.boot.OrgID)
	require.NoError(t, err)
	decide(second.ID)
	for _, a := range []ApprovalCreated{first, second} {
		ev := expect[evidenceAnswer](e, http.StatusOK, http.MethodGet, "/v1/approvals/"+a.ID+"/evidence", e.boot.ManagementKey, nil)
		require.Len(t, ev.Items, 1, a.ID)
		got, err := passkeys.VerifyEvidence(ev.Items[0], ev.Items[0].PublicKey)
		require.NoError(t, err)
		require.Equal(t, a.ID, got.ApprovalID)
		require.Equal(t, r.id, ev.Items[0].UserID)
	}
}

// TestExpiredCeremoniesAreSwept: every passkey sign-in page asks for options
// (a public call), and each leaves a ceremony behind unless it is finished.
// Expired ones are deleted by the server's sweep, live ones kept.
func TestExpiredCeremoniesAreSwept(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	stale := expectAs[passkeys.Options](e, http.StatusOK, http.MethodPost, "/v1/auth/passkey/options", nil, nil)
	live := expectAs[passkeys.Options](e, http.StatusOK, http.MethodPost, "/v1/auth/passkey/options", nil, nil)
	_, err := e.st.Pool.Exec(context.Background(),
		`UPDATE webauthn_ceremonies SET expires_at = now() - interval '1 minute' WHERE id = $1`, stale.CeremonyID)
	require.NoError(t, err)
	e.srv.sweepSignIn(context.Background())
	count := func(id string) int {
		var n int
		require.NoError(t, e.st.Pool.QueryRow(context.Background(), `SELECT count(*) FROM webauthn_ceremonies WHERE id = $1`, id).Scan(&n))
		return n
	}
	require.Zero(t, count(stale.CeremonyID), "an expired ceremony is deleted")
	require.Equal(t, 1, count(live.CeremonyID), "a live one stays")
}

// TestEmailCodeEnrollsOnlyTheFirstPasskey: an enrollment-only session (an
// e-mail code) may enroll only while the account has no passkey. Options
// taken before someone else enrolled the first one do not let it add a
// second one afterwards.
func TestEmailCodeEnrollsOnlyTheFirstPasskey(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	user := e.person(RoleReviewer)
	owner, other := passkeystest.New("localhost", testOrigin), passkeystest.New("localhost", testOrigin)
	late := bearer(e.signIn(user, false).Token)
	opts := expectAs[passkeys.Options](e, http.StatusOK, http.MethodPost, "/v1/me/passkeys/options", late, nil)
	status, raw := e.enrollREST(owner, bearer(e.signIn(user, false).Token))
	require.Equal(t, http.StatusCreated, status, string(raw))

	resp, err := other.Create(opts.PublicKey)
	require.NoError(t, err)
	status, raw = e.asSession(http.MethodPost, "/v1/me/passkeys", late,
		map[string]any{"ceremony_id": opts.CeremonyID, "credential": json.RawMessage(resp), "name": "late"})
	requireStatusCode(t, http.StatusForbidden, CodePasskeyRequired, status, raw)
	require.Equal(t, 1, e.count(`SELECT count(*) FROM passkeys WHERE user_id = $2 AND $1 <> ''`, user))
}

// testDecideOptionsRefuseLikeDecide: options for a decision that cannot be
// made are refused up front, with the very answer decide gives (status, code,
// the approval's standing), and leave no ceremony behind: for an approval
// already decided, and for one whose deadline passed before the worker
// expired it (the workflow's validator refuses a decision on it as expired).
func testDecideOptionsRefuseLikeDecide(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.allowDecide(true)
	e.seedTool("wire_money", "", nil)
	r := e.enrolledReviewer(RoleReviewer)
	e.setApproverGroup(1, []string{r.id})
	ceremonies := func() int {
		return e.count(`SELECT count(*) FROM webauthn_ceremonies WHERE user_id = $2 AND $1 <> ''`, r.id)
	}
	// prepared is a decide with an assertion made while the approval could still be decided.
	prepared := func(id string) map[string]any {
		opts := expectAs[decideOptionsAnswer](e, http.StatusOK, http.MethodPost, "/v1/approvals/"+id+"/decide/options", r.hdr,
			map[string]any{"decision": "approve"})
		resp, err := r.auth.Get(opts.PublicKey)
		require.NoError(t, err)
		return map[string]any{"decision": "approve", "ceremony_id": opts.CeremonyID, "credential": json.RawMessage(resp)}
	}
	// refusal is a problem without its request id, which differs per request.
	refusal := func(raw []byte) map[string]any {
		var p map[string]any
		require.NoError(t, json.Unmarshal(raw, &p), string(raw))
		delete(p, "request_id")
		return p
	}
	// sameAsDecide asks for options on an approval that cannot be decided and
	// checks the refusal is decide's, reviewer's and management key's alike.
	sameAsDecide := func(id string, decide map[string]any, code string) map[string]any {
		t.Helper()
		before := ceremonies()
		status, raw := e.asSession(http.MethodPost, "/v1/approvals/"+id+"/decide/options", r.hdr, map[string]any{"decision": "approve"})
		requireStatusCode(t, http.StatusConflict, code, status, raw)
		require.Equal(t, before, ceremonies(), "a refused start stores no ceremony")
		got := refusal(raw)
		status, raw = e.asSession(http.MethodPost, "/v1/approvals/"+id+"/decide", r.hdr, decide)
		require.Equal(t, http.StatusConflict, status, string(raw))
		require.Equal(t, got, refusal(raw), "options answer as the reviewer's decide does")
		raw = e.expectProblem(http.StatusConflict, code, http.MethodPost, "/v1/approvals/"+id+"/decide", e.boot.ManagementKey,
			map[string]any{"decision": "approve"})
		require.Equal(t, got, refusal(raw), "options answer as a management key's decide does")
		return got["approval"].(map[string]any)
	}

	denied := e.requestApproval(map[string]any{"tool": "wire_money", "reasoning": "pay", "parameters": map[string]any{"amount": 1}})
	late := prepared(denied.ID)
	expect[Approval](e, http.StatusOK, http.MethodPost, "/v1/approvals/"+denied.ID+"/decide", e.boot.ManagementKey,
		map[string]any{"decision": "deny"})
	standing := sameAsDecide(denied.ID, late, CodeAlreadyDecided)
	require.Equal(t, "denied", standing["status"])
	decisions := standing["decisions"].([]any)
	require.Len(t, decisions, 1)
	require.Equal(t, "deny", decisions[0].(map[string]any)["decision"], "the winning decision")

	// The level's deadline passed; the worker has not expired the approval yet.
	overdue := e.requestApproval(map[string]any{"tool": "wire_money", "reasoning": "pay", "parameters": map[string]any{"amount": 2}})
	late = prepared(overdue.ID)
	// Moved back once the workflow's creation is projected, which would write its deadline again.
	require.Eventually(t, func() bool {
		tag, err := s.st.Pool.Exec(context.Background(), `UPDATE approvals SET expires_at = now() - interval '1 second'
			WHERE id = $1 AND status = 'pending' AND projection_seq > 0`, overdue.ID)
		require.NoError(t, err)
		return tag.RowsAffected() == 1
	}, hangDeadline, 20*time.Millisecond, "the approval's creation was never projected")
	standing = sameAsDecide(overdue.ID, late, CodeApprovalExpired)
	require.Equal(t, "pending", standing["status"])
	require.EqualValues(t, 1, standing["level"])
	require.Empty(t, standing["decisions"])
}

// regenerateCodes makes new recovery codes as the session hdr, confirmed
// with a passkey of a, and answers the API's answer.
func (e *testEnv) regenerateCodes(a *passkeystest.Authenticator, hdr map[string]string) (int, http.Header, []byte) {
	e.t.Helper()
	return e.send(http.MethodPost, "/v1/me/recovery-codes", "", hdr, e.confirmREST(a, hdr, "/v1/me/recovery-codes/options"))
}

// TestRecoveryCodesNeedAPasskeyAssertion: a recovery code signs in to the
// account for good, so a session alone — a stolen cookie — cannot make new
// ones: only the person's passkey, asserting for options this very session
// asked for.
func TestRecoveryCodesNeedAPasskeyAssertion(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	r := e.enrolledReviewer(RoleReviewer)
	generated := func() int {
		return e.count(`SELECT count(*) FROM audit_events WHERE kind = $2 AND actor_id = $3 AND $1 <> ''`,
			passkeys.KindRecoveryGenerated, r.id)
	}
	require.Equal(t, 1, generated(), "the first enrollment's codes")

	for _, body := range []any{nil, map[string]any{}, map[string]any{"ceremony_id": "cer_nope"}} {
		status, raw := e.asSession(http.MethodPost, "/v1/me/recovery-codes", r.hdr, body)
		requireStatusCode(t, http.StatusUnauthorized, CodePasskeyAssertionNeeded, status, raw)
	}
	// Options another session of the same person asked for do not serve this one.
	status, raw, _ := e.passkeySignIn(r.auth)
	require.Equal(t, http.StatusOK, status, string(raw))
	var other SessionInfo
	require.NoError(t, json.Unmarshal(raw, &other))
	opts := expectAs[passkeys.Options](e, http.StatusOK, http.MethodPost, "/v1/me/recovery-codes/options", bearer(other.Token), nil)
	resp, err := r.auth.Get(opts.PublicKey)
	require.NoError(t, err)
	status, raw = e.asSession(http.MethodPost, "/v1/me/recovery-codes", r.hdr,
		map[string]any{"ceremony_id": opts.CeremonyID, "credential": json.RawMessage(resp)})
	requireStatusCode(t, http.StatusUnauthorized, passkeys.CodeCeremonyInvalid, status, raw)
	require.Equal(t, 1, generated(), "nothing was regenerated")

	status, _, raw = e.regenerateCodes(r.auth, r.hdr)
	require.Equal(t, http.StatusOK, status, string(raw))
	var got struct {
		Codes []string `json:"recovery_codes"`
	}
	require.NoError(t, json.Unmarshal(raw, &got))
	require.Len(t, got.Codes, passkeys.RecoveryCodeCount)
	require.Equal(t, 2, generated())
}

// TestPasskeyChangesNeedAPasskeyAssertion: a passkey added by whoever holds
// a session alone (a stolen cookie) would sign in to the account for good,
// and removing the owner's passkeys would lock them out: both take an
// existing passkey's assertion made for this very change (for a removal,
// this very passkey) in this very session.
func TestPasskeyChangesNeedAPasskeyAssertion(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	r := e.enrolledReviewer(RoleReviewer)
	thief := passkeystest.New("localhost", testOrigin)
	count := func() int { return e.count(`SELECT count(*) FROM passkeys WHERE user_id = $2 AND $1 <> ''`, r.id) }
	var first string
	require.NoError(t, e.st.Pool.QueryRow(t.Context(), `SELECT id FROM passkeys WHERE user_id = $1`, r.id).Scan(&first))
	// addWith tries to add the thief's passkey with confirmation (none when nil).
	addWith := func(confirmation any) (int, []byte) {
		t.Helper()
		opts := expectAs[passkeys.Options](e, http.StatusOK, http.MethodPost, "/v1/me/passkeys/options", r.hdr, nil)
		resp, err := thief.Create(opts.PublicKey)
		require.NoError(t, err)
		body := map[string]any{"ceremony_id": opts.CeremonyID, "credential": json.RawMessage(resp)}
		if confirmation != nil {
			body["confirmation"] = confirmation
		}
		return e.asSession(http.MethodPost, "/v1/me/passkeys", r.hdr, body)
	}

	// The session alone adds none: without a confirmation, with an empty or
	// a half one.
	for _, confirmation := range []any{nil, map[string]any{}, map[string]any{"ceremony_id": "cer_nope"}} {
		status, raw := addWith(confirmation)
		requireStatusCode(t, http.StatusUnauthorized, CodePasskeyAssertionNeeded, status, raw)
	}
	// Confirmations of another session, or another change, are refused.
	status, raw, _ := e.passkeySignIn(r.auth)
	require.Equal(t, http.StatusOK, status, string(raw))
	var other SessionInfo
	require.NoError(t, json.Unmarshal(raw, &other))
	for name, confirmation := range map[string]map[string]any{
		"another session": e.confirmREST(r.auth, bearer(other.Token), "/v1/me/passkeys/add-options"),
		"recovery codes":  e.confirmREST(r.auth, r.hdr, "/v1/me/recovery-codes/options"),
	} {
		status, raw := addWith(confirmation)
		requireStatusCode(t, http.StatusUnauthorized, passkeys.CodeCeremonyInvalid, status, raw)
		require.Equal(t, 1, count(), name)
	}

	// Confirmed by the person's passkey, a second one is added.
	phone := passkeystest.New("localhost", testOrigin)
	status, raw = e.addPasskeyREST(phone, r.auth, r.hdr)
	require.Equal(t, http.StatusCreated, status, string(raw))
	var added enrolledAnswer
	require.NoError(t, json.Unmarshal(raw, &added))
	require.Equal(t, 2, count())
	// A removal's confirmation adds none.
	status, raw = addWith(e.confirmREST(r.auth, r.hdr, "/v1/me/passkeys/"+first+"/remove-options"))
	requireStatusCode(t, http.StatusUnauthorized, passkeys.CodeCeremonyInvalid, status, raw)

	// The session alone removes none; nor does a confirmation made in
	// another session, for another passkey or for an addition.
	for _, body := range []any{nil, map[string]any{}, map[string]any{"credential": map[string]any{"id": "x"}}} {
		status, raw := e.asSession(http.MethodDelete, "/v1/me/passkeys/"+first, r.hdr, body)
		requireStatusCode(t, http.StatusUnauthorized, CodePasskeyAssertionNeeded, status, raw)
	}
	for name, confirmation := range map[string]map[string]any{
		"another session": e.confirmREST(r.auth, bearer(other.Token), "/v1/me/passkeys/"+first+"/remove-options"),
		"another passkey": e.confirmREST(r.auth, r.hdr, "/v1/me/passkeys/"+added.Passkey.ID+"/remove-options"),
		"an addition":     e.confirmREST(r.auth, r.hdr, "/v1/me/passkeys/add-options"),
	} {
		status, raw := e.asSession(http.MethodDelete, "/v1/me/passkeys/"+first, r.hdr, confirmation)
		requireStatusCode(t, http.StatusUnauthorized, passkeys.CodeCeremonyInvalid, status, raw)
		require.Equal(t, 2, count(), name)
	}
	require.Zero(t, e.countAudit(passkeys.KindPasskeyChangeRefused), "misdirected ceremonies are no refused assertions")

	// An assertion made without user verification is refused and audited,
	// once, with the change; nothing secret is kept.
	confirmed := e.confirmREST(r.auth, r.hdr, "/v1/me/passkeys/"+first+"/remove-options")
	phone.WithoutUserVerification()
	status, raw = e.removePasskeyREST(phone, r.hdr, first)
	requireStatusCode(t, http.StatusUnauthorized, passkeys.CodeAssertionInvalid, status, raw)
	require.Equal(t, 2, count())
	var subject, outcome, details string
	require.NoError(t, e.st.Pool.QueryRow(t.Context(), `SELECT subject, outcome, details::text FROM audit_events
		WHERE kind = $1 AND actor_id = $2`, passkeys.KindPasskeyChangeRefused, r.id).Scan(&subject, &outcome, &details))
	require.Equal(t, []string{first, "refused", `{"change": "remove", "reason": "assertion_invalid"}`}, []string{subject, outcome, details})

	// Confirmed, in this session, for this passkey: it goes.
	status, raw = e.asSession(http.MethodDelete, "/v1/me/passkeys/"+first, r.hdr, confirmed)
	require.Equal(t, http.StatusNoContent, status, string(raw))
	require.Equal(t, 1, count())
}
