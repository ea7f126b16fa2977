package web

import (
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// Deciding in the browser: the approval page's form asks the API for
// options that bind this approval, its level and the decision
// (POST /v1/approvals/{id}/decide/options, from static/webauthn.js), the
// reviewer confirms with their passkey, and the form brings the assertion
// here; the API verifies it, keeps it as evidence and sends the decision
// to the approval's workflow, whose answer is final.

// maxNoteRunes is the API's limit on a decision's note.
const maxNoteRunes = 1000

// evidenceItem is one passkey-signed decision as GET
// /v1/approvals/{id}/evidence lists it.
type evidenceItem struct {
	Level        int       `json:"level"`
	Decision     string    `json:"decision"`
	ParamsHash   string    `json:"params_hash"`
	RPID         string    `json:"rp_id"`
	UserID       string    `json:"user_id"`
	PasskeyID    string    `json:"passkey_id"`
	CredentialID string    `json:"credential_id"`
	Signature    string    `json:"signature"`
	DecidedAt    time.Time `json:"decided_at"`
}

// decideForm is what the decide form sent, kept to show it again.
type decideForm struct {
	Note string
}

func (d *Dashboard) decide(w http.ResponseWriter, r *http.Request) {
	m := d.person(w, r)
	if m == nil {
		return
	}
	ref := r.PathValue("ref")
	f := decideForm{Note: strings.TrimSpace(r.PostFormValue("note"))}
	decision := r.PostFormValue("decision")
	if decision != "approve" && decision != "deny" {
		d.showApproval(w, r, m, ref, http.StatusUnprocessableEntity, "Choose approve or deny.", f)
		return
	}
	if utf8.RuneCountInString(f.Note) > maxNoteRunes {
		d.showApproval(w, r, m, ref, http.StatusUnprocessableEntity, "The note is longer than 1,000 characters.", f)
		return
	}
	c, ok := readCeremony(r)
	if !ok {
		d.showApproval(w, r, m, ref, http.StatusUnprocessableEntity, noCeremony, f)
		return
	}
	in := map[string]any{"decision": decision, "ceremony_id": c.CeremonyID, "credential": c.Credential}
	if f.Note != "" {
		in["note"] = f.Note
	}
	a, ok := d.callOrFail(w, r, "decide approval", http.MethodPost, "/v1/approvals/"+url.PathEscape(ref)+"/decide", in, nil)
	if !ok {
		return
	}
	if a.problem != nil {
		d.showApproval(w, r, m, ref, formStatus(a.status), a.problem.Detail, f)
		return
	}
	http.Redirect(w, r, "/approvals/"+url.PathEscape(ref), http.StatusSeeOther)
}
