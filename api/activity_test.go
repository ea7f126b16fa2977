package api

import (
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"oakallow/api/mail"
	"oakallow/api/mail/mailtest"
	"oakallow/api/passkeys"
	"oakallow/api/passkeys/passkeystest"
	"oakallow/api/ratelimit"
	"oakallow/store"
	"oakallow/workflows"
)

// identityKindsInCode lists every audit kind the code writes about people,
// read from the source rather than from a list kept by hand, so a new kind
// is in the set the moment it is written: the kinds of identityEvent
// literals and auditTeam calls (this package), of the passkey service's
// audit, auditFailure and audit-row literals (api/passkeys), and of the
// account purge (activities/deletion.go). A kind passed through a parameter
// is found at the callers; any other expression fails the test.
func identityKindsInCode(t *testing.T) map[string]bool {
	t.Helper()
	type source struct {
		pkg   string // the package name its constants are known by
		files []string
	}
	glob := func(dir string) []string {
		all, err := filepath.Glob(filepath.Join(dir, "*.go"))
		require.NoError(t, err)
		return slices.DeleteFunc(all, func(f string) bool { return strings.HasSuffix(f, "_test.go") })
	}
	sources := []source{
		{pkg: "api", files: glob(".")},
		{pkg: "passkeys", files: glob("passkeys")},
		{pkg: "activities", files: glob("../activities")},
	}
	fset := token.NewFileSet()
	parsed := map[string][]*ast.File{}
	consts := map[string]map[string]string{} // package → constant → value
	for _, src := range sources {
		consts[src.pkg] = map[string]string{}
		for _, f := range src.files {
			file, err := parser.ParseFile(fset, f, nil, 0)
			require.NoError(t, err)
			parsed[src.pkg] = append(parsed[src.pkg], file)
			for _, d := range file.Decls {
				gd, ok := d.(*ast.GenDecl)
				if !ok || gd.Tok != token.CONST {
					continue
				}
				for _, spec := range gd.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, name := range vs.Names {
						if i < len(vs.Values) {
							if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
								v, err := strconv.Unquote(lit.Value)
								require.NoError(t, err)
								consts[src.pkg][name.Name] = v
							}
						}
					}
				}
			}
		}
	}
	kinds := map[string]bool{}
	add := func(pkg string, e ast.Expr) {
		switch x := e.(type) {
		case *ast.BasicLit:
			v, err := strconv.Unquote(x.Value)
			require.NoError(t, err)
			kinds[v] = true
			return
		case *ast.Ident:
			if v, ok := consts[pkg][x.Name]; ok {
				kinds[v] = true
				return
			}
			if x.Obj == nil || x.Obj.Kind == ast.Var { // a parameter or variable: its callers are scanned
				return
			}
		case *ast.SelectorExpr:
			if p, ok := x.X.(*ast.Ident); ok {
				if v, ok := consts[p.Name][x.Sel.Name]; ok {
					kinds[v] = true
					return
				}
				if _, known := consts[p.Name]; !known { // a field (ev.Kind) of a value passed through
					return
				}
			}
		}
		t.Fatalf("%s: an audit kind the test cannot read: %T", fset.Position(e.Pos()), e)
	}
	kindField := func(pkg string, lit *ast.CompositeLit) {
		for _, el := range lit.Elts {
			if kv, ok := el.(*ast.KeyValueExpr); ok {
				if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Kind" {
					add(pkg, kv.Value)
				}
			}
		}
	}
	isType := func(e ast.Expr, pkg, name string) bool {
		switch x := e.(type) {
		case *ast.Ident:
			return pkg == "" && x.Name == name
		case *ast.SelectorExpr:
			p, ok := x.X.(*ast.Ident)
			return ok && p.Name == pkg && x.Sel.Name == name
		}
		return false
	}
	for pkg, files := range parsed {
		for _, file := range files {
			if pkg == "activities" && filepath.Base(fset.Position(file.Pos()).Filename) != "deletion.go" {
				continue // the other activities audit approvals, tokens and deliveries
			}
			ast.Inspect(file, func(n ast.Node) bool {
				switch x := n.(type) {
				case *ast.CompositeLit:
					switch {
					case pkg == "api" && isType(x.Type, "", "identityEvent"),
						pkg != "api" && isType(x.Type, "store", "InsertAuditEventParams"):
						kindField(pkg, x)
					}
				case *ast.CallExpr:
					sel, ok := x.Fun.(*ast.SelectorExpr)
					if !ok {
						return true
					}
					switch {
					case pkg == "api" && sel.Sel.Name == "auditTeam":
						add(pkg, x.Args[4])
					case pkg == "passkeys" && sel.Sel.Name == "audit":
						add(pkg, x.Args[3])
					case pkg == "passkeys" && sel.Sel.Name == "auditFailure":
						add(pkg, x.Args[2])
					}
				}
				return true
			})
		}
	}
	return kinds
}

// listActivity pages through GET /v1/activity as hdr (limit per page) and
// returns every entry, newest first.
func listActivity(e *testEnv, hdr map[string]string, limit int) []ActivityEvent {
	e.t.Helper()
	var all []ActivityEvent
	cursor := ""
	for {
		q := url.Values{"limit": {strconv.Itoa(limit)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		page := expectAs[activityOutputBody](e, http.StatusOK, http.MethodGet, "/v1/activity?"+q.Encode(), hdr, nil)
		require.LessOrEqual(e.t, len(page.Items), limit)
		all = append(all, page.Items...)
		if page.NextCursor == "" {
			return all
		}
		cursor = page.NextCursor
	}
}

type activityOutputBody struct {
	Items      []ActivityEvent `json:"items"`
	NextCursor string          `json:"next_cursor"`
}

func eventIDs(evs []ActivityEvent) []string {
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	return ids
}

// testIdentityActivity (in TestApprovalSuite: deletion and decisions need
// the real worker and Temporal) does everything about people the code can
// audit, in a team made by open sign-up, and reads the owner's activity:
// each kind shows, the list is exactly the org's entries and the team's
// team-level ones, and none of it reaches another team's owner, a reviewer
// or an API key.
func testIdentityActivity(t *testing.T, s *approvalSuite) {
	ctx := context.Background()
	want := identityKindsInCode(t)
	require.Greater(t, len(want), 20, "the scan found the identity kinds: %v", want)

	sink := mailtest.Start(t)
	sender, err := mail.NewSMTP(mail.SMTPConfig{Host: sink.Host, Port: sink.Port, From: "oakallow <no-reply@example.com>", TLS: mail.TLSNone})
	require.NoError(t, err)
	cfg := testConfig()
	off := ratelimit.Limit{Off: true}
	cfg.Accounts = AccountsConfig{OpenSignUp: true, CodesPerIP: off, CodeFailuresPerIP: off}
	srv, err := NewServer(cfg, Deps{Store: s.st, Logger: testLogger(), Keyring: testKeyring, Temporal: s.tc,
		Activities: s.acts, SecretBox: s.box, Mailer: sender})
	require.NoError(t, err)
	require.NoError(t, srv.Start(ctx))
	t.Cleanup(srv.Stop)
	m := &mailEnv{testEnv: &testEnv{t: t, st: s.st, srv: srv, base: "http://" + srv.Addr()}, sink: sink}
	e := m.testEnv
	mails := map[string]int{}
	code := func(addr string) string {
		mails[addr]++
		return m.code(addr, mails[addr])
	}
	enroll := func(a *passkeystest.Authenticator, tok string) enrolledAnswer {
		status, raw := e.enrollREST(a, bearer(tok))
		require.Equal(t, http.StatusCreated, status, string(raw))
		var got enrolledAnswer
		require.NoError(t, json.Unmarshal(raw, &got))
		return got
	}
	join := func(owner map[string]string, addr, role string) (string, string) {
		inv := expectAs[CreatedInvitation](e, http.StatusCreated, http.MethodPost, "/v1/team/invitations", owner,
			map[string]any{"email": addr, "role": role})
		mails[addr]++ // the invitation
		u, err := url.Parse(inv.Link)
		require.NoError(t, err)
		si := m.signedIn(m.start(addr, u.Query().Get("invitation")), code(addr), map[string]any{"name": role})
		return m.me(si.Token).UserID, si.Token
	}

	// The owner signs up (a new team), fails a code once, and enrolls a passkey.
	ownerAddr := store.NewID("owner") + "@example.com"
	signUp := m.signedIn(m.start(ownerAddr, ""), code(ownerAddr), map[string]any{"name": "Olga", "team_name": "Identity"})
	me := m.me(signUp.Token)
	require.Len(t, me.Memberships, 1)
	ownerID, teamID := me.UserID, me.Memberships[0].TeamID
	att := m.start(ownerAddr, "")
	wrong := "000000"
	if code(ownerAddr) == wrong {
		wrong = "111111"
	}
	status, raw := m.verify(att, wrong, nil)
	requireStatusCode(t, http.StatusUnauthorized, CodeInvalidCode, status, raw)
	ownerKey := passkeystest.New("localhost", testOrigin)
	ownerTok := enroll(ownerKey, signUp.Token).Session.Token
	owner := bearer(ownerTok)

	// Orgs, keys and agents.
	org := expectAs[Org](e, http.StatusCreated, http.MethodPost, "/v1/orgs", owner, map[string]any{"name": "main"})
	owner = with(owner, headerOrg, org.ID)
	expectAs[Org](e, http.StatusOK, http.MethodPatch, "/v1/orgs/"+org.ID, owner, map[string]any{"name": "main-app"})
	scratch := expectAs[Org](e, http.StatusCreated, http.MethodPost, "/v1/orgs", owner, map[string]any{"name": "scratch"})
	expectAs[struct{}](e, http.StatusNoContent, http.MethodDelete, "/v1/orgs/"+scratch.ID, owner, nil)
	keys := "/v1/orgs/" + org.ID + "/keys"
	mgmt := expectAs[CreatedAPIKey](e, http.StatusCreated, http.MethodPost, keys, owner, map[string]any{"name": "ops", "tier": "management"})
	std := expectAs[CreatedAPIKey](e, http.StatusCreated, http.MethodPost, keys, owner, map[string]any{"name": "agent", "tier": "standard"})
	spare := expectAs[CreatedAPIKey](e, http.StatusCreated, http.MethodPost, keys, owner, map[string]any{"name": "spare", "tier": "standard"})
	expectAs[struct{}](e, http.StatusNoContent, http.MethodDelete, keys+"/"+spare.ID, owner, nil)
	agents := "/v1/orgs/" + org.ID + "/agents"
	agent := expectAs[CreatedAgentIdentity](e, http.StatusCreated, http.MethodPost, agents, owner, map[string]any{"name": "bot"})
	expectAs[struct{}](e, http.StatusNoContent, http.MethodDelete, agents+"/"+agent.ID, owner, nil)

	// People: a reviewer who becomes admin, recovers and leaves; a member
	// who is removed; a plain reviewer; an invitation revoked.
	adminID, adminTok := join(owner, "rita@example.com", RoleReviewer)
	adminKey := passkeystest.New("localhost", testOrigin)
	adminEnrolled := enroll(adminKey, adminTok)
	expectAs[Member](e, http.StatusOK, http.MethodPatch, "/v1/team/members/"+adminID, owner, map[string]any{"role": RoleAdmin})
	removedID, _ := join(owner, "max@example.com", RoleReviewer)
	expectAs[struct{}](e, http.StatusNoContent, http.MethodDelete, "/v1/team/members/"+removedID, owner, nil)
	_, plainTok := join(owner, "paul@example.com", RoleReviewer)
	plain := bearer(enroll(passkeystest.New("localhost", testOrigin), plainTok).Session.Token)
	late := expectAs[CreatedInvitation](e, http.StatusCreated, http.MethodPost, "/v1/team/invitations", owner,
		map[string]any{"email": "late@example.com", "role": RoleAdmin})
	expectAs[struct{}](e, http.StatusNoContent, http.MethodDelete, "/v1/team/invitations/"+late.ID, owner, nil)

	// Passkeys and sessions: a sign-in, a failed one (the assertion answers
	// another ceremony's challenge), a second passkey removed, sessions
	// revoked one by one, all but this one, and by signing out.
	status, raw, _ = e.passkeySignIn(ownerKey)
	require.Equal(t, http.StatusOK, status, string(raw))
	var second SessionInfo
	require.NoError(t, json.Unmarshal(raw, &second))
	first := expectAs[passkeys.Options](e, http.StatusOK, http.MethodPost, "/v1/auth/passkey/options", nil, nil)
	other := expectAs[passkeys.Options](e, http.StatusOK, http.MethodPost, "/v1/auth/passkey/options", nil, nil)
	resp, err := ownerKey.Get(first.PublicKey)
	require.NoError(t, err)
	status, raw = e.asSession(http.MethodPost, "/v1/auth/passkey", nil,
		map[string]any{"ceremony_id": other.CeremonyID, "credential": json.RawMessage(resp), "client": "app"})
	requireStatusCode(t, http.StatusUnauthorized, passkeys.CodeAssertionInvalid, status, raw)
	status, raw = e.addPasskeyREST(passkeystest.New("localhost", testOrigin), ownerKey, owner)
	require.Equal(t, http.StatusCreated, status, string(raw))
	var extra enrolledAnswer
	require.NoError(t, json.Unmarshal(raw, &extra))
	status, raw = e.removePasskeyREST(ownerKey, owner, extra.Passkey.ID)
	require.Equal(t, http.StatusNoContent, status, string(raw))
	expectAs[struct{}](e, http.StatusNoContent, http.MethodDelete, "/v1/sessions/"+second.SessionID, owner, nil)
	status, raw, _ = e.passkeySignIn(ownerKey)
	require.Equal(t, http.StatusOK, status, string(raw))
	expectAs[revokeOthersBody](e, http.StatusOK, http.MethodPost, "/v1/sessions/revoke-others", owner, nil)
	status, raw, _ = e.passkeySignIn(ownerKey)
	require.Equal(t, http.StatusOK, status, string(raw))
	var third SessionInfo
	require.NoError(t, json.Unmarshal(raw, &third))
	expectAs[struct{}](e, http.StatusNoContent, http.MethodPost, "/v1/auth/sign-out", bearer(third.Token), nil)
	status, _, raw = e.regenerateCodes(ownerKey, owner)
	require.Equal(t, http.StatusOK, status, string(raw))

	// A decision signed with a passkey, after one whose assertion was refused.
	d := &testEnv{t: t, st: s.st, srv: srv, base: e.base, boot: BootstrapResult{TeamID: teamID, OrgID: org.ID, UserID: ownerID,
		ManagementKey: mgmt.Key, StandardKey: std.Key}}
	d.waitForKey(std.Key)
	d.seedTool("wire_money", "", nil)
	apr := d.requestApproval(map[string]any{"tool": "wire_money", "reasoning": "pay the supplier"})
	path := "/v1/approvals/" + apr.ID + "/decide"
	opts := expectAs[decideOptionsAnswer](e, http.StatusOK, http.MethodPost, path+"/options", owner, map[string]any{"decision": "approve"})
	again := expectAs[decideOptionsAnswer](e, http.StatusOK, http.MethodPost, path+"/options", owner, map[string]any{"decision": "approve"})
	resp, err = ownerKey.Get(opts.PublicKey)
	require.NoError(t, err)
	status, raw = e.asSession(http.MethodPost, path, owner,
		map[string]any{"decision": "approve", "ceremony_id": again.CeremonyID, "credential": json.RawMessage(resp)})
	requireStatusCode(t, http.StatusUnauthorized, passkeys.CodeAssertionInvalid, status, raw)
	status, raw = e.decideWithPasskey(reviewer{id: ownerID, auth: ownerKey, hdr: owner}, apr.ID, "approve")
	require.Equal(t, http.StatusOK, status, string(raw))
	// Its run ends (the token minted and audited) before the log is read.
	require.NoError(t, s.tc.GetWorkflow(ctx, apr.Reference, "").Get(ctx, nil))

	// The admin reads the team's activity, then recovers with a code,
	// enrolls anew and deletes their account; the purge runs here rather
	// than after 30 days.
	adminHdr := with(bearer(adminEnrolled.Session.Token), headerOrg, org.ID)
	seenByAdmin := map[string]bool{}
	for _, ev := range listActivity(e, adminHdr, 200) {
		seenByAdmin[ev.Kind] = true
	}
	require.True(t, seenByAdmin[kindMemberRoleChanged] && seenByAdmin[kindOrgDeleted] && seenByAdmin[passkeys.KindEnrolled],
		"an admin sees the team-level entries: %v", seenByAdmin)
	status, raw = e.asSession(http.MethodPost, "/v1/auth/recovery", nil,
		map[string]any{"email": "rita@example.com", "code": adminEnrolled.RecoveryCodes[0], "client": "app"})
	require.Equal(t, http.StatusOK, status, string(raw))
	var recovered SessionInfo
	require.NoError(t, json.Unmarshal(raw, &recovered))
	reenrolled := enroll(adminKey, recovered.Token)
	expectAs[AccountDeletion](e, http.StatusAccepted, http.MethodDelete, "/v1/me", bearer(reenrolled.Session.Token), nil)
	t.Cleanup(func() {
		_ = s.tc.TerminateWorkflow(context.Background(), workflows.AccountDeletionWorkflowID(adminID), "", "test over")
	})
	_, err = s.acts.PurgeAccount(ctx, workflows.PurgeAccountInput{UserID: adminID})
	require.NoError(t, err)

	// The owner sees every kind, and exactly the org's entries and the
	// team's team-level ones, page by page in one order.
	all := listActivity(e, owner, 200)
	seen := map[string]bool{}
	for _, ev := range all {
		seen[ev.Kind] = true
	}
	for kind := range want {
		require.True(t, seen[kind], "%s is missing from the owner's activity", kind)
	}
	truth := queryIDs(t, s, `SELECT id FROM audit_events WHERE org_id = $1 OR (org_id = '' AND team_id = $2) ORDER BY seq DESC`, org.ID, teamID)
	require.Equal(t, truth, eventIDs(all))
	require.Equal(t, truth, eventIDs(listActivity(e, owner, 7)), "small pages walk both branches in one order")
	filtered := expectAs[activityOutputBody](e, http.StatusOK, http.MethodGet, "/v1/activity?kind="+passkeys.KindEnrolled, owner, nil)
	require.Len(t, filtered.Items, 5, "the owner's two, the admin's two and the reviewer's one")
	// The dashboard's Activity page lists them too.
	status, _, body := e.page("/activity?kind="+kindMemberRoleChanged, ownerTok)
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, kindMemberRoleChanged)
	require.Contains(t, body, adminID)

	// Nobody else sees the team-level entries: not a reviewer, not the
	// org's keys, not another team's owner.
	status, raw = e.asSession(http.MethodGet, "/v1/activity", with(plain, headerOrg, org.ID), nil)
	requireStatusCode(t, http.StatusForbidden, CodeInsufficientRole, status, raw)
	for _, key := range []string{mgmt.Key, std.Key} {
		page := expect[activityOutputBody](d, http.StatusOK, http.MethodGet, "/v1/activity?limit=200", key, nil)
		require.Empty(t, page.NextCursor)
		orgOnly := queryIDs(t, s, `SELECT id FROM audit_events WHERE org_id = $1 ORDER BY seq DESC`, org.ID)
		require.Less(t, len(orgOnly), len(truth))
		require.Equal(t, orgOnly, eventIDs(page.Items))
	}
	stranger := s.org(t)
	theirs := listActivity(e, bearer(stranger.signIn(stranger.boot.UserID, true).Token), 200)
	require.NotEmpty(t, theirs)
	for _, ev := range theirs {
		require.NotContains(t, truth, ev.ID)
		require.NotContains(t, []string{ownerID, adminID, removedID}, ev.ActorID, "%s leaked to another team", ev.Kind)
	}
}

// queryIDs returns the ids a query selects.
func queryIDs(t *testing.T, s *approvalSuite, query string, args ...any) []string {
	t.Helper()
	rows, err := s.st.Pool.Query(context.Background(), query, args...)
	require.NoError(t, err)
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	return ids
}

type revokeOthersBody struct {
	Revoked int `json:"revoked"`
}
