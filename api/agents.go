package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/store"
)

// Agent identities (SPEC §1, §7): named, org-scoped bearer credentials
// (oak_agent_…) for autonomous agents. Owners and admins create, list and
// revoke them, like API keys: the secret is shown once and stored as SHA-256
// only. An identity authenticates through the key cache (auth.go), so a
// revocation takes effect on this replica before the answer and on every
// other one with the "keys" change notification.

const (
	kindAgentCreated = "agent.created"
	kindAgentRevoked = "agent.revoked"
	tagAgents        = "Agent identities"
	// maxActiveAgentsPerOrg bounds the identities that work at once, as
	// maxActiveKeysPerOrg does for keys.
	maxActiveAgentsPerOrg = 500
	// maxAgentLifetimeDays bounds expires_in_days.
	maxAgentLifetimeDays = 3650
)

// AgentIdentity is an agent identity as listed; never its secret.
type AgentIdentity struct {
	ID             string     `json:"id" doc:"Agent id (agt_…); the audit log names the agent's calls by it."`
	Name           string     `json:"name" doc:"What the agent is."`
	Prefix         string     `json:"prefix" doc:"The secret's first characters, for recognising it."`
	CreatedBy      string     `json:"created_by,omitempty" doc:"User id of the person who created it."`
	CreatedByEmail string     `json:"created_by_email,omitempty" doc:"Their e-mail address."`
	CreatedAt      time.Time  `json:"created_at" doc:"When it was created."`
	ExpiresAt      *time.Time `json:"expires_at,omitempty" doc:"When it stops working; absent: never."`
	LastUsedAt     *time.Time `json:"last_used_at,omitempty" doc:"When it last authenticated a request (to the minute)."`
	RevokedAt      *time.Time `json:"revoked_at,omitempty" doc:"When it was revoked; absent while it works."`
}

// CreatedAgentIdentity answers a creation: the only time the secret is shown.
type CreatedAgentIdentity struct {
	AgentIdentity
	Secret string `json:"secret" doc:"The credential (oak_agent_…), sent as Authorization: Bearer. Shown once: store it now; oakallow keeps only its SHA-256."`
}

type agentCreateInput struct {
	IdempotencyHeader
	OrgID string `path:"org_id" maxLength:"64" doc:"Org id (org_…)."`
	Body  struct {
		_             struct{} `additionalProperties:"false"`
		Name          string   `json:"name" minLength:"1" maxLength:"200" pattern:"^[^\\x00-\\x1f\\x7f]+$" patternDescription:"no control characters" doc:"What the agent is." example:"support triage agent"`
		ExpiresInDays *int     `json:"expires_in_days,omitempty" minimum:"1" maximum:"3650" doc:"Days until it stops working; absent: it works until revoked."`
	}
}

type agentRefInput struct {
	IdempotencyHeader
	OrgID   string `path:"org_id" maxLength:"64" doc:"Org id (org_…)."`
	AgentID string `path:"agent_id" maxLength:"64" doc:"Agent id (agt_…)."`
}

func registerAgents(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "list-agent-identities", Method: http.MethodGet, Path: "/v1/orgs/{org_id}/agents",
		Summary: "List an org's agent identities", Description: "Every agent identity of the org, revoked ones too, newest first. Owners and admins.",
		Tags: []string{tagAgents}, Errors: teamErrors,
	}, accessTeamAdmin), func(ctx context.Context, in *orgKeysInput) (*listOutput[AgentIdentity], error) {
		rows, err := s.deps.Store.ListOrgAgentIdentities(ctx, mustPrincipal(ctx).OrgID)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		items := make([]AgentIdentity, 0, len(rows))
		for _, r := range rows {
			a := AgentIdentity{ID: r.ID, Name: r.Name, Prefix: r.Prefix, CreatedByEmail: r.CreatedByEmail,
				CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, LastUsedAt: r.LastUsedAt, RevokedAt: r.RevokedAt}
			if r.CreatedBy != nil {
				a.CreatedBy = *r.CreatedBy
			}
			items = append(items, a)
		}
		return newList(items), nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "create-agent-identity", Method: http.MethodPost, Path: "/v1/orgs/{org_id}/agents",
		Summary: "Create an agent identity",
		Description: "Creates an oak_agent_ credential for an autonomous agent of the org: it may check permissions, request " +
			"approvals and read them, mint tokens and log executions (billed like a standard key), over REST and /mcp; it can " +
			"never change setup or decide. The secret is in this answer only. Owners and admins.",
		Tags: []string{tagAgents}, Errors: append(teamErrors, http.StatusConflict), DefaultStatus: http.StatusCreated,
	}, accessTeamAdmin), func(ctx context.Context, in *agentCreateInput) (*writeOutput[CreatedAgentIdentity], error) {
		out, err := manageWrite(ctx, s, in.IdempotencyKey, "create-agent-identity:"+in.OrgID, in.Body, http.StatusCreated,
			func(ctx context.Context, p Principal) (CreatedAgentIdentity, error) {
				var a CreatedAgentIdentity
				err := s.inTx(ctx, func(q *store.Queries) error {
					now := s.now()
					n, err := q.CountOrgActiveAgentIdentities(ctx, store.CountOrgActiveAgentIdentitiesParams{OrgID: p.OrgID, Now: now})
					if err != nil {
						return err
					}
					if n >= maxActiveAgentsPerOrg {
						return problem(http.StatusConflict, CodeConflict, fmt.Sprintf("an org has at most %d active agent identities; revoke one first", maxActiveAgentsPerOrg))
					}
					raw, hash, display := GenerateAgentSecret()
					a = CreatedAgentIdentity{AgentIdentity: AgentIdentity{ID: store.NewID("agt"), Name: in.Body.Name, Prefix: display,
						CreatedBy: p.UserID, CreatedAt: now}, Secret: raw}
					if d := in.Body.ExpiresInDays; d != nil {
						at := now.Add(time.Duration(min(*d, maxAgentLifetimeDays)) * 24 * time.Hour)
						a.ExpiresAt = &at
					}
					if err := q.CreateAgentIdentity(ctx, store.CreateAgentIdentityParams{ID: a.ID, OrgID: p.OrgID, Name: a.Name,
						Prefix: display, Hash: hash[:], CreatedBy: &p.UserID, CreatedAt: now, ExpiresAt: a.ExpiresAt}); err != nil {
						return err
					}
					if err := s.auditTeam(ctx, q, p, p.OrgID, kindAgentCreated, a.ID, "", map[string]any{
						"prefix": display, "name": a.Name, "expires_at": a.ExpiresAt}); err != nil {
						return err
					}
					return q.NotifyChange(ctx, "keys")
				})
				return a, err
			})
		if err == nil && out.Replayed == "" {
			s.applyKeyChange(ctx)
		}
		return out, err
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "revoke-agent-identity", Method: http.MethodDelete, Path: "/v1/orgs/{org_id}/agents/{agent_id}",
		Summary:     "Revoke an agent identity",
		Description: "The identity stops working at once on this replica and, through PostgreSQL notifications, on every other within a second. Owners and admins.",
		Tags:        []string{tagAgents}, Errors: append(teamErrors, http.StatusNotFound), DefaultStatus: http.StatusNoContent,
	}, accessTeamAdmin), func(ctx context.Context, in *agentRefInput) (*deleteOutput, error) {
		out, err := manageDelete(ctx, s, in.IdempotencyKey, "revoke-agent-identity:"+in.OrgID+":"+in.AgentID, func(ctx context.Context, p Principal) error {
			return s.inTx(ctx, func(q *store.Queries) error {
				a, err := q.RevokeAgentIdentity(ctx, store.RevokeAgentIdentityParams{ID: in.AgentID, OrgID: p.OrgID, Now: s.now()})
				if err != nil {
					return err
				}
				if err := s.auditTeam(ctx, q, p, p.OrgID, kindAgentRevoked, a.ID, "", map[string]any{"prefix": a.Prefix, "name": a.Name}); err != nil {
					return err
				}
				return q.NotifyChange(ctx, "keys")
			})
		})
		if err == nil {
			s.applyKeyChange(ctx)
		}
		return out, err
	})
}
