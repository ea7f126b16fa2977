package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/store"
)

type activityInput struct {
	Kind    string    `query:"kind" maxLength:"100" doc:"Event kind, exactly as listed in docs/AUDIT.md, e.g. permission.check, rule.created, approval.decided, approval.start_recovered."`
	Tool    string    `query:"tool" maxLength:"200" doc:"Tool name."`
	Tenant  string    `query:"tenant" maxLength:"200" doc:"Tenant name."`
	Outcome string    `query:"outcome" maxLength:"100" doc:"Outcome, e.g. a verdict (allowed, requires_approval, disabled) or insufficient_credits."`
	Since   time.Time `query:"since" doc:"Only events at or after this time (RFC 3339)."`
	Until   time.Time `query:"until" doc:"Only events before this time (RFC 3339)."`
	Cursor  string    `query:"cursor" maxLength:"300" doc:"next_cursor of the previous page."`
	Limit   int       `query:"limit" minimum:"1" maximum:"200" default:"50" doc:"Page size."`
}

// ActivityEvent is one audit log entry.
type ActivityEvent struct {
	ID         string          `json:"id"`
	OccurredAt time.Time       `json:"occurred_at"`
	ActorKind  string          `json:"actor_kind" doc:"api_key, user, agent, system, workflow."`
	ActorID    string          `json:"actor_id"`
	Kind       string          `json:"kind"`
	Subject    string          `json:"subject,omitempty"`
	Outcome    string          `json:"outcome,omitempty"`
	Tool       string          `json:"tool,omitempty"`
	Tenant     string          `json:"tenant,omitempty"`
	Billable   bool            `json:"billable"`
	CostMicros int64           `json:"cost_micros"`
	Details    json.RawMessage `json:"details" doc:"Kind-specific details; parameters, reasons and context are PII-scrubbed."`
}

type activityOutput struct {
	Body struct {
		Items      []ActivityEvent `json:"items"`
		NextCursor string          `json:"next_cursor,omitempty" doc:"Pass as cursor for the next (older) page; absent on the last page."`
	}
}

const activityDescription = "The org's append-only audit log, newest first, filterable and cursor-paginated. Free. " +
	"For an owner or admin session it also lists the team's entries that belong to no org: sign-ins, sessions, " +
	"passkeys, recovery codes, invitations, memberships, deleted orgs and account deletions."

func registerActivity(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "list-activity", Method: http.MethodGet, Path: "/v1/activity",
		Summary:     "Audit log",
		Description: activityDescription,
		Tags:        []string{"Runtime"},
	}, accessManageRead), func(ctx context.Context, in *activityInput) (*activityOutput, error) {
		p := mustPrincipal(ctx)
		before, err := decodeSeqCursor(in.Cursor)
		if err != nil {
			return nil, err
		}
		params := store.ListAuditEventsParams{OrgID: p.OrgID, BeforeSeq: before, Kind: in.Kind, Tool: in.Tool,
			Tenant: nameRef(in.Tenant), Outcome: in.Outcome, RowLimit: int32(in.Limit) + 1,
			WithTeam: seesTeamActivity(p), TeamID: p.TeamID}
		if !in.Since.IsZero() {
			params.Since = &in.Since
		}
		if !in.Until.IsZero() {
			params.Until = &in.Until
		}
		rows, err := s.deps.Store.ListAuditEvents(ctx, params)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		out := &activityOutput{}
		out.Body.Items = make([]ActivityEvent, 0, min(len(rows), in.Limit))
		for i, r := range rows {
			if i == in.Limit {
				out.Body.NextCursor = encodeCursor(strconv.FormatInt(rows[i-1].Seq, 10))
				break
			}
			out.Body.Items = append(out.Body.Items, ActivityEvent{ID: r.ID, OccurredAt: r.OccurredAt, ActorKind: r.ActorKind,
				ActorID: r.ActorID, Kind: r.Kind, Subject: r.Subject, Outcome: r.Outcome, Tool: r.Tool, Tenant: r.Tenant,
				Billable: r.Billable, CostMicros: r.CostMicros, Details: r.Details})
		}
		return out, nil
	})
}

// seesTeamActivity tells whether p's activity includes the team-level
// entries (org ""): about the team's people and memberships.
// Only owner and admin sessions manage those; a key, an agent or a reviewer
// sees its org's entries alone.
func seesTeamActivity(p Principal) bool {
	return p.Kind == PrincipalUser && (p.Role == RoleOwner || p.Role == RoleAdmin)
}
