package api

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/danielgtaylor/huma/v2"
)

// Access levels an operation declares in its metadata under "access".
const (
	// accessPublic needs no credentials (health, docs).
	accessPublic = "public"
	// accessRuntime: standard keys only (billable runtime calls).
	accessRuntime = "runtime"
	// accessRuntimeRead: standard keys only, free reads of runtime data.
	accessRuntimeRead = "runtime_read"
	// accessManageRead: management keys, and standard keys (read-only).
	accessManageRead = "manage_read"
	// accessManageWrite: management keys only.
	accessManageWrite = "manage_write"
	// accessDecide: management keys (when the org allows it) — the handler
	// checks the org setting.
	accessDecide = "decide"
)

const securityScheme = "apiKey"

// withAccess sets an operation's declared security and access level.
func withAccess(op huma.Operation, access string) huma.Operation {
	if op.Metadata == nil {
		op.Metadata = map[string]any{}
	}
	op.Metadata["access"] = access
	if access != accessPublic {
		op.Security = []map[string][]string{{securityScheme: {}}}
		if !slices.Contains(op.Errors, http.StatusTooManyRequests) {
			// Any caller with a key can meet a rate limit (see limits.go).
			op.Errors = append(op.Errors, http.StatusTooManyRequests)
		}
	}
	if op.MaxBodyBytes == 0 {
		op.MaxBodyBytes = maxBodyBytes
	}
	return op
}

// presentedKey returns the key from X-API-Key or Authorization: Bearer.
func presentedKey(ctx huma.Context) string {
	if k := ctx.Header("X-API-Key"); k != "" {
		return strings.TrimSpace(k)
	}
	if a := ctx.Header("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// authenticate is the one place API security is enforced: it resolves the
// caller and checks the operation's declared access level against the key
// tier. An operation that declares nothing is refused (fail closed).
func (s *Server) authenticate(ctx huma.Context, next func(huma.Context)) {
	access, _ := ctx.Operation().Metadata["access"].(string)
	if access == accessPublic {
		next(ctx)
		return
	}
	if access == "" {
		huma.WriteErr(s.api, ctx, http.StatusInternalServerError, "operation declares no access level")
		return
	}
	raw := presentedKey(ctx)
	// An address past its budget of failures is refused before its key is
	// looked at, a correct key too: otherwise a guesser would still learn
	// from every attempt. While no address is held back (Active is one
	// atomic load) a request pays for nothing more, not even finding out
	// where it comes from.
	var ip netip.Addr
	ipKnown := false
	if s.limits.authIP.Active() {
		ip, ipKnown = s.limits.clientIP(ctx), true
		if v := s.limits.authIP.Check(ip, s.deps.Now()); v.Limited {
			s.refuse(ctx, limitAuthFailuresPerIP, v, limited{ip: ip}, "too many failed authentications from this address")
			return
		}
	}
	p, ok := s.keys.Lookup(raw)
	if !ok {
		if !ipKnown {
			ip = s.limits.clientIP(ctx)
		}
		s.authFailed(ctx, raw, ip)
		return
	}
	allowed := false
	switch access {
	case accessRuntime, accessRuntimeRead:
		allowed = p.Tier == TierStandard
	case accessManageRead:
		allowed = true
	case accessManageWrite, accessDecide:
		allowed = p.Tier == TierManagement
	}
	if !allowed {
		msg := "this endpoint needs a standard (runtime) key"
		if access == accessManageWrite || access == accessDecide || access == accessManageRead {
			msg = "this endpoint needs a management key"
		}
		writeProblem(s.api, ctx, problem(http.StatusForbidden, CodeWrongKeyTier, msg))
		return
	}
	next(huma.WithValue(ctx, principalKey, p))
}

func writeProblem(api huma.API, ctx huma.Context, p *Problem) {
	p.RequestID = requestIDFrom(ctx.Context())
	ctx.SetHeader("Content-Type", "application/problem+json")
	ctx.SetStatus(p.Status)
	_ = api.Marshal(ctx.BodyWriter(), "application/json", p)
}

// mustPrincipal returns the authenticated caller; authenticate guarantees it
// exists for every non-public operation.
func mustPrincipal(ctx context.Context) Principal {
	p, ok := principalFrom(ctx)
	if !ok {
		panic("api: operation reached without a principal; authenticate middleware missing")
	}
	return p
}

// countRequests counts every operation's answers by status class.
func (s *Server) countRequests(ctx huma.Context, next func(huma.Context)) {
	next(ctx)
	s.metrics.requests.WithLabelValues(ctx.Operation().OperationID, statusClass(ctx.Status())).Inc()
}
