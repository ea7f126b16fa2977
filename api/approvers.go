package api

import (
	"context"
	"net/http"
	"slices"
	"strconv"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/store"
)

// Approver groups (SPEC §1): Approval 1 and Approval 2, each a set of the
// team's users; an empty group means "every active member". A non-empty
// Approval 2 group is what makes tools with requires_second_approval take a
// second level. They are team-wide, so only the team's owners and admins,
// signed in, may change them — never a key: a key belongs to one org, and
// emptying Approval 2 turns the two-level approvals of every org of the team
// into one level.

const kindApproverGroupUpdated = "approver_group.updated"

// maxGroupMembers bounds one group.
const maxGroupMembers = 500

// ApproverGroup is one approver group of the org's team.
type ApproverGroup struct {
	Level    int      `json:"level" minimum:"1" maximum:"2" doc:"1 for Approval 1, 2 for Approval 2."`
	UserIDs  []string `json:"user_ids" doc:"The members' user ids, sorted."`
	Everyone bool     `json:"everyone" doc:"True when the group is empty, which means every active team member may decide this level. An empty Approval 2 group also means tools that require a second approval get only one level."`
}

type approverGroupLevelInput struct {
	Level int `path:"level" minimum:"1" maximum:"2" doc:"1 or 2."`
}

type setApproverGroupInput struct {
	IdempotencyHeader
	Level int `path:"level" minimum:"1" maximum:"2" doc:"1 or 2."`
	Body  struct {
		_       struct{} `additionalProperties:"false"`
		UserIDs []string `json:"user_ids" maxItems:"500" doc:"The complete new member list (replaces the old one); every id must be an active user of the org's team. Empty means everyone." example:"[\"usr_k3x…\"]"`
	}
}

type approverGroupOutput struct {
	Body ApproverGroup
}

type setApproverGroupOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed" doc:"true when this is the stored answer to an earlier request with the same Idempotency-Key."`
	Body     ApproverGroup
}

type listApproverGroupsOutput struct {
	Body struct {
		Items []ApproverGroup `json:"items" doc:"Approval 1 and Approval 2."`
	}
}

const tagTeam = "Team"

func registerApprovers(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "list-approver-groups", Method: http.MethodGet, Path: "/v1/team/approver-groups",
		Summary: "List approver groups", Description: "Both approver groups of the org's team.",
		Tags: []string{tagTeam}, Errors: manageReadErrors,
	}, accessManageRead), func(ctx context.Context, _ *struct{}) (*listApproverGroupsOutput, error) {
		p := mustPrincipal(ctx)
		out := &listApproverGroupsOutput{}
		for level := 1; level <= 2; level++ {
			g, err := s.loadApproverGroup(ctx, s.deps.Store.Queries, p.TeamID, level)
			if err != nil {
				return nil, toProblem(ctx, s.log, err)
			}
			out.Body.Items = append(out.Body.Items, g)
		}
		return out, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "get-approver-group", Method: http.MethodGet, Path: "/v1/team/approver-groups/{level}",
		Summary: "Get an approver group", Description: "One approver group of the org's team.",
		Tags: []string{tagTeam}, Errors: manageReadErrors,
	}, accessManageRead), func(ctx context.Context, in *approverGroupLevelInput) (*approverGroupOutput, error) {
		g, err := s.loadApproverGroup(ctx, s.deps.Store.Queries, mustPrincipal(ctx).TeamID, in.Level)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		return &approverGroupOutput{Body: g}, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "set-approver-group", Method: http.MethodPut, Path: "/v1/team/approver-groups/{level}",
		Summary: "Set an approver group",
		Description: "Replaces the members of Approval 1 or Approval 2 of the team (the groups are shared by the " +
			"team's orgs). Only an owner or admin of the team, signed in, may do it; API keys never can. Approvals " +
			"already running keep the level plan they started with.",
		Tags: []string{tagTeam}, Errors: manageWriteErrors,
	}, accessTeamAdmin), func(ctx context.Context, in *setApproverGroupInput) (*setApproverGroupOutput, error) {
		status, body, replayed, err := idempotent(ctx, s, in.IdempotencyKey, "set-approver-group:"+strconv.Itoa(in.Level), in.Body,
			func(ctx context.Context) (int, ApproverGroup, error) {
				res, err := s.setApproverGroup(ctx, mustPrincipal(ctx), in.Level, in.Body.UserIDs)
				return http.StatusOK, res, err
			})
		if err != nil {
			return nil, err
		}
		return &setApproverGroupOutput{Status: status, Replayed: replayedHeader(replayed), Body: body}, nil
	})
}

func (s *Server) loadApproverGroup(ctx context.Context, q *store.Queries, teamID string, level int) (ApproverGroup, error) {
	ids, err := q.ListApproverGroup(ctx, store.ListApproverGroupParams{TeamID: teamID, Level: int16(level)})
	if err != nil {
		return ApproverGroup{}, err
	}
	return ApproverGroup{Level: level, UserIDs: ids, Everyone: len(ids) == 0}, nil
}

func (s *Server) setApproverGroup(ctx context.Context, p Principal, level int, userIDs []string) (ApproverGroup, error) {
	ids := slices.Clone(userIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) > maxGroupMembers {
		return ApproverGroup{}, fieldProblem("body.user_ids", "too many members", len(ids))
	}
	now := s.now()
	var out ApproverGroup
	err := s.inTx(ctx, func(q *store.Queries) error {
		if len(ids) > 0 {
			n, err := q.CountTeamUsers(ctx, store.CountTeamUsersParams{TeamID: p.TeamID, UserIds: ids})
			if err != nil {
				return err
			}
			if int(n) != len(ids) {
				return fieldProblem("body.user_ids", "every user id must be an active user of this org's team", nil)
			}
		}
		before, err := s.loadApproverGroup(ctx, q, p.TeamID, level)
		if err != nil {
			return err
		}
		if err := q.ClearApproverGroup(ctx, store.ClearApproverGroupParams{TeamID: p.TeamID, Level: int16(level)}); err != nil {
			return err
		}
		if len(ids) > 0 {
			if err := q.SetApproverGroup(ctx, store.SetApproverGroupParams{TeamID: p.TeamID, Level: int16(level), UserIds: ids}); err != nil {
				return err
			}
		}
		out = ApproverGroup{Level: level, UserIDs: ids, Everyone: len(ids) == 0}
		if slices.Equal(before.UserIDs, ids) {
			return nil
		}
		return s.recordChange(ctx, q, p, now, change{kind: kindApproverGroupUpdated, subject: p.TeamID,
			details: map[string]any{"level": level, "user_ids": fieldChange{From: before.UserIDs, To: ids}}})
	})
	if err != nil {
		return ApproverGroup{}, err
	}
	return out, nil
}
