package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"oakallow/store"
)

// ToolSummary is a registered tool as an agent sees it: what it is, how
// risky, and what its parameters must look like.
type ToolSummary struct {
	Name            string          `json:"name"`
	Description     string          `json:"description,omitempty"`
	Category        string          `json:"category,omitempty"`
	RiskLevel       string          `json:"risk_level"`
	Status          string          `json:"status"`
	Enabled         bool            `json:"enabled"`
	ReadOnly        bool            `json:"read_only"`
	Destructive     bool            `json:"destructive"`
	Idempotent      bool            `json:"idempotent"`
	OpenWorld       bool            `json:"open_world"`
	ParameterSchema json.RawMessage `json:"parameter_schema,omitempty"`
}

// MaxToolPage is the largest page ListTools returns.
const MaxToolPage = 200

// ListTools returns a page of the org's tools in id order, after the tool
// id after ("" for the first page), and the id to continue after ("" on the
// last page).
func (s *Service) ListTools(ctx context.Context, orgID, after string, limit int) ([]ToolSummary, string, error) {
	if limit < 1 || limit > MaxToolPage {
		return nil, "", invalidField("limit", fmt.Sprintf("limit must be 1 … %d", MaxToolPage))
	}
	if !Storable(after) {
		return nil, "", refuse(KindBadRequest, CodeBadRequest, "cursor is not one this list returned")
	}
	rows, err := s.d.Store.ListToolViews(ctx, store.ListToolViewsParams{OrgID: orgID, After: after, RowLimit: int32(limit) + 1})
	if err != nil {
		return nil, "", fmt.Errorf("list tools: %w", err)
	}
	n := min(len(rows), limit)
	out := make([]ToolSummary, 0, n)
	for _, r := range rows[:n] {
		t := r.Tool
		sum := ToolSummary{Name: t.Name, Description: t.Description, RiskLevel: t.RiskLevel, Status: t.Status,
			Enabled: t.Enabled, ReadOnly: t.ReadOnly, Destructive: t.Destructive, Idempotent: t.Idempotent,
			OpenWorld: t.OpenWorld, ParameterSchema: t.ParameterSchema}
		if r.CategoryName != nil {
			sum.Category = *r.CategoryName
		}
		out = append(out, sum)
	}
	next := ""
	if len(rows) > limit {
		next = rows[n-1].Tool.ID
	}
	return out, next, nil
}

// CanFund reports whether the caller's team can pay for one more billable
// call now (unexpired free credit plus purchased credit covers its price).
// It says nothing of the amounts.
func (s *Service) CanFund(ctx context.Context, c Caller) (bool, error) {
	bal, err := s.d.Store.GetTeamBalance(ctx, c.TeamID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("load balance: %w", err)
	}
	spendable := bal.PurchasedMicros
	if bal.FreeExpiresAt != nil && bal.FreeExpiresAt.After(s.d.Now()) && bal.FreeMicros > 0 {
		spendable += bal.FreeMicros
	}
	return spendable >= s.d.Recorder.CostMicros(), nil
}
