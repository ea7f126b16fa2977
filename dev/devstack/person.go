package devstack

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"oakallow/api/passkeys/passkeystest"
	"oakallow/store"
)

// SignInPerson adds a person with role to the dev org's team, starts their
// first (enrollment-only) session in the store as the e-mail sign-in would,
// enrolls a passkey through the API with a virtual authenticator, and
// returns the full session's token (send it as a Bearer token) and the
// authenticator, for dev tools that act as a signed-in person.
func (s *Stack) SignInPerson(ctx context.Context, role string) (string, *passkeystest.Authenticator, error) {
	var teamID string
	if err := s.st.Pool.QueryRow(ctx, "SELECT team_id FROM orgs WHERE id = $1", s.creds.OrgID).Scan(&teamID); err != nil {
		return "", nil, err
	}
	now := time.Now()
	user := store.NewID("usr")
	if err := s.st.CreateUser(ctx, store.CreateUserParams{ID: user, Email: user + "@example.com", Name: "Dev " + role, CreatedAt: now}); err != nil {
		return "", nil, err
	}
	if err := s.st.CreateMembership(ctx, store.CreateMembershipParams{TeamID: teamID, UserID: user, Role: role, CreatedAt: now}); err != nil {
		return "", nil, err
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	tok := "oak_ses_" + base64.RawURLEncoding.EncodeToString(b[:])
	h := sha256.Sum256([]byte(tok))
	if err := s.st.CreateSession(ctx, store.CreateSessionParams{ID: store.NewID("ses"), UserID: user, TokenHash: h[:],
		State: "enrollment", Method: "email_code", Client: "app", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		return "", nil, err
	}
	u, err := url.Parse(s.creds.APIURL)
	if err != nil {
		return "", nil, err
	}
	// The API derives the relying party from its public URL, a loopback one here: "localhost".
	auth := passkeystest.New("localhost", "http://localhost:"+u.Port())
	var opts struct {
		CeremonyID string          `json:"ceremony_id"`
		PublicKey  json.RawMessage `json:"publicKey"`
	}
	if err := s.call(ctx, "/v1/me/passkeys/options", tok, nil, &opts); err != nil {
		return "", nil, err
	}
	resp, err := auth.Create(opts.PublicKey)
	if err != nil {
		return "", nil, err
	}
	var enrolled struct {
		Session *struct {
			Token string `json:"session_token"`
		} `json:"session"`
	}
	if err := s.call(ctx, "/v1/me/passkeys", tok, map[string]any{"ceremony_id": opts.CeremonyID,
		"credential": json.RawMessage(resp)}, &enrolled); err != nil {
		return "", nil, err
	}
	if enrolled.Session == nil || enrolled.Session.Token == "" {
		return "", nil, errors.New("enrollment did not upgrade the session")
	}
	return enrolled.Session.Token, auth, nil
}

// call POSTs body as JSON to the API with a session token and decodes the
// 2xx answer into out.
func (s *Stack) call(ctx context.Context, path, token string, body, out any) error {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.creds.APIURL+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: status %d: %.300s", path, resp.StatusCode, raw)
	}
	return json.Unmarshal(raw, out)
}

// PublicURL is the API's external base URL: links, the OAuth issuer and the
// passkeys' origin (localhost; the API listens on 127.0.0.1).
func (s *Stack) PublicURL() string { return s.publicURL }
