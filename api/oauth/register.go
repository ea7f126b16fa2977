package oauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"oakallow/store"
)

// Bounds of a registration (RFC 7591 leaves them to the server).
const (
	maxRegisterBody  = 16 << 10
	maxRedirectURIs  = 10
	maxURILen        = 2000
	maxClientNameLen = 200
)

// registration is the part of RFC 7591 §2 client metadata this server
// reads; other members are ignored (§2: "the authorization server MUST
// ignore any client metadata sent by the client that it does not
// understand").
type registration struct {
	RedirectURIs            []string `json:"redirect_uris"`
	ClientName              string   `json:"client_name"`
	ClientURI               string   `json:"client_uri"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	Scope                   string   `json:"scope"`
}

// registered is the RFC 7591 §3.2.1 answer.
type registered struct {
	ClientID                string   `json:"client_id"`
	ClientIDIssuedAt        int64    `json:"client_id_issued_at"`
	ClientName              string   `json:"client_name,omitempty"`
	ClientURI               string   `json:"client_uri,omitempty"`
	RedirectURIs            []string `json:"redirect_uris"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	Scope                   string   `json:"scope"`
}

// register is the RFC 7591 registration endpoint.
func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	ip := s.d.ClientIP(r)
	if l := s.cfg.RegisterLimit; !l.Off {
		now := s.d.Now()
		h := hashOf("oauth_register:" + ip.String())
		hit, err := s.d.Store.HitAuthLimit(r.Context(), store.HitAuthLimitParams{Scope: "oauth_register", Subject: h,
			Now: now, WindowCutoff: now.Add(-l.Per)})
		if err != nil {
			s.internal(w, r, fmt.Errorf("registration limit: %w", err))
			return
		}
		if int(hit.Count) > l.N {
			secs := max(1, int(hit.WindowStart.Add(l.Per).Sub(now).Seconds()+0.999))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			writeError(w, http.StatusTooManyRequests, "rate_limited",
				fmt.Sprintf("too many client registrations from this address; retry after %d s", secs))
			return
		}
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeError(w, http.StatusBadRequest, "invalid_client_metadata", "send the client metadata as application/json")
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRegisterBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "invalid_client_metadata",
			fmt.Sprintf("client metadata is at most %d bytes", maxRegisterBody))
		return
	}
	var m registration
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&m); err != nil || dec.More() {
		writeError(w, http.StatusBadRequest, "invalid_client_metadata", "client metadata must be one JSON object of RFC 7591 §2")
		return
	}
	out, code, msg := s.validateRegistration(m)
	if code != "" {
		writeError(w, http.StatusBadRequest, code, msg)
		return
	}
	now := s.d.Now()
	out.ClientID, out.ClientIDIssuedAt = store.NewID("cli"), now.Unix()
	err = s.d.Store.InTx(r.Context(), func(_ pgx.Tx, q *store.Queries) error {
		if err := q.CreateOAuthClient(r.Context(), store.CreateOAuthClientParams{ID: out.ClientID, Name: out.ClientName,
			ClientUri: out.ClientURI, RedirectUris: out.RedirectURIs, ClientIp: ip.String(), CreatedAt: now}); err != nil {
			return fmt.Errorf("create client: %w", err)
		}
		return s.audit(r.Context(), q, audit{kind: KindClientRegistered, actorKind: actorClientIP, actorID: ip.String(),
			subject: out.ClientID, outcome: "registered", details: map[string]any{"client_name": out.ClientName,
				"redirect_uris": out.RedirectURIs}})
	})
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

// validateRegistration checks client metadata and returns what is
// registered, or an RFC 7591 §3.2.2 error code and description.
func (s *Server) validateRegistration(m registration) (registered, string, string) {
	out := registered{TokenEndpointAuthMethod: "none", GrantTypes: []string{"authorization_code", "refresh_token"},
		ResponseTypes: []string{"code"}, Scope: ScopeRead + " " + ScopeWrite}
	if n := len(m.RedirectURIs); n == 0 || n > maxRedirectURIs {
		return out, "invalid_redirect_uri", fmt.Sprintf("redirect_uris must list 1 to %d URIs", maxRedirectURIs)
	}
	for _, u := range m.RedirectURIs {
		if err := validRedirectURI(u); err != nil {
			return out, "invalid_redirect_uri", err.Error()
		}
	}
	out.RedirectURIs = slices.Compact(slices.Clone(m.RedirectURIs))
	if !utf8.ValidString(m.ClientName) || utf8.RuneCountInString(m.ClientName) > maxClientNameLen || hasControl(m.ClientName) {
		return out, "invalid_client_metadata", fmt.Sprintf("client_name must be at most %d printable characters", maxClientNameLen)
	}
	out.ClientName = m.ClientName
	if m.ClientURI != "" {
		u, err := url.Parse(m.ClientURI)
		if len(m.ClientURI) > maxURILen || err != nil || u.Scheme != "https" || u.Host == "" {
			return out, "invalid_client_metadata", "client_uri must be an https URL"
		}
		out.ClientURI = m.ClientURI
	}
	// OAuth 2.1: the code grant and refresh tokens only (no implicit, no
	// password, no client credentials for a public client).
	for _, g := range m.GrantTypes {
		if g != "authorization_code" && g != "refresh_token" {
			return out, "invalid_client_metadata", "grant_types may only be authorization_code and refresh_token"
		}
	}
	for _, t := range m.ResponseTypes {
		if t != "code" {
			return out, "invalid_client_metadata", "response_types may only be code"
		}
	}
	// A client asking for a secret is registered as a public client
	// (RFC 7591 §3.2.1: the server may replace requested values), and the
	// answer says so: PKCE protects its codes.
	if _, _, err := parseScope(m.Scope); err != nil {
		return out, "invalid_client_metadata", err.Error()
	}
	return out, "", ""
}

// validRedirectURI enforces OAuth 2.1 §2.3.1 and RFC 8252 §7.3: an absolute
// https URI, or http on a loopback address; no fragment, no credentials.
func validRedirectURI(raw string) error {
	if len(raw) > maxURILen || !utf8.ValidString(raw) || hasControl(raw) {
		return fmt.Errorf("redirect URIs are at most %d printable characters", maxURILen)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return errors.New("a redirect URI must be an absolute URL")
	}
	if strings.Contains(raw, "#") || u.User != nil {
		return errors.New("a redirect URI may not carry a fragment or credentials")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
	default:
		return errors.New("a redirect URI must be https, or http on a loopback host (127.0.0.1, [::1], localhost)")
	}
	return nil
}

// redirectRegistered reports whether the authorization response may go to
// requested for a client that registered uris: one of them exactly, or —
// RFC 8252 §7.3, OAuth 2.1 §8.4.2 — one on a loopback IP literal
// (http://127.0.0.1 or http://[::1]) that differs only in its port, since a
// native client listens on whatever port the OS gives it on each run.
// Scheme, host, path and query must still match byte for byte. A
// "localhost" URI keeps the exact match: RFC 8252 §8.3 advises against it
// (the name may resolve off the machine), so it gets no latitude.
func redirectRegistered(uris []string, requested string) bool {
	if slices.Contains(uris, requested) {
		return true
	}
	host, rest, ok := splitLoopbackRedirect(requested)
	if !ok {
		return false
	}
	return slices.ContainsFunc(uris, func(u string) bool {
		h, r, ok := splitLoopbackRedirect(u)
		return ok && h == host && r == rest
	})
}

// splitLoopbackRedirect splits an http URI on a loopback IP literal into
// its host and what follows the authority (path and query), leaving out the
// port, which must be absent or a number from 1 to 65535. Anything else —
// another scheme or host, user info, a fragment, a malformed port — is not
// such a URI. No parsing or normalisation: the parts are compared as sent.
func splitLoopbackRedirect(raw string) (host, rest string, ok bool) {
	after, found := strings.CutPrefix(raw, "http://")
	if !found || len(raw) > maxURILen || strings.ContainsRune(raw, '#') || hasControl(raw) || !utf8.ValidString(raw) {
		return "", "", false
	}
	end := strings.IndexAny(after, "/?")
	if end < 0 {
		end = len(after)
	}
	authority, rest := after[:end], after[end:]
	for _, h := range [...]string{"127.0.0.1", "[::1]"} {
		port, found := strings.CutPrefix(authority, h)
		if !found {
			continue
		}
		if port == "" {
			return h, rest, true
		}
		digits, found := strings.CutPrefix(port, ":")
		if n, err := strconv.Atoi(digits); !found || err != nil || len(digits) > 5 || n < 1 || n > 65535 || digits[0] < '0' || digits[0] > '9' {
			return "", "", false
		}
		return h, rest, true
	}
	return "", "", false
}

func hasControl(v string) bool {
	for _, r := range v {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return true
		}
	}
	return false
}
