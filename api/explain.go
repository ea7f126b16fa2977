package api

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/resolver"
)

type explainInput struct {
	Tool     string `query:"tool" required:"true" minLength:"1" maxLength:"200" doc:"Tool name, as checks name it." example:"send_email"`
	Tenant   string `query:"tenant" maxLength:"200" doc:"Tenant name; tenant levels are walked only when set."`
	Resource string `query:"resource" maxLength:"200" doc:"Resource name."`
	Method   string `query:"method" maxLength:"200" doc:"Method." example:"send"`
}

// ExplainKey is the rule key a level looks up for the check.
type ExplainKey struct {
	Tenant   string `json:"tenant,omitempty" doc:"Tenant name in the key."`
	Resource string `json:"resource,omitempty" doc:"Resource name in the key."`
	Tool     string `json:"tool,omitempty" doc:"Tool name in the key."`
	Method   string `json:"method,omitempty" doc:"Method in the key."`
}

// ExplainStep is one level of the chain for the check.
type ExplainStep struct {
	Level     int         `json:"level" minimum:"0" maximum:"12" doc:"1–8 rule levels (within scope), 9–12 fallbacks, 0 for a gate."`
	LevelName string      `json:"level_name" doc:"Stable name of the level, e.g. org_tool_method, category_default, or a gate's reason."`
	Scope     string      `json:"scope" enum:"gate,tenant,org,fallback" doc:"Part of the chain the level belongs to."`
	Outcome   string      `json:"outcome" enum:"decides,no_rule,skipped_no_tenant,skipped_no_resource,skipped_no_method,unset,passed_over_draft,not_reached" doc:"What the level did for this check: decides (gave the answer), no_rule (consulted, no rule with this key), skipped_* (its key needs a field the check lacks), unset (a fallback with nothing set), passed_over_draft (a fallback's allowed passed over for a draft tool), not_reached (after the deciding level)."`
	Key       *ExplainKey `json:"key,omitempty" doc:"The rule key looked up at this level (consulted rule levels only)."`
	// Permission and RuleID are what the level holds, whether or not it decided.
	Permission string `json:"permission,omitempty" enum:"allowed,requires_approval,disabled" doc:"What the level holds: the rule's or the fallback's verdict; absent when it holds none."`
	RuleID     string `json:"rule_id,omitempty" doc:"The rule found at this level."`
}

// Explanation is the answer of GET /v1/permissions/explain.
type Explanation struct {
	Tool       string        `json:"tool" doc:"The tool, as checked."`
	Tenant     string        `json:"tenant,omitempty" doc:"The tenant, normalised as checks normalise it."`
	Resource   string        `json:"resource,omitempty" doc:"The resource, normalised."`
	Method     string        `json:"method,omitempty" doc:"The method, normalised."`
	Permission string        `json:"permission" enum:"allowed,requires_approval,disabled" doc:"The verdict a check with these fields gets now."`
	Level      int           `json:"level" minimum:"0" maximum:"12" doc:"The deciding level."`
	LevelName  string        `json:"level_name" doc:"Stable name of the deciding level."`
	Scope      string        `json:"scope" enum:"gate,tenant,org,fallback" doc:"Where the decision came from."`
	RuleID     string        `json:"rule_id,omitempty" doc:"The deciding rule, when a rule decided."`
	Reason     string        `json:"reason,omitempty" doc:"tool_not_registered, tool_disabled or tool_draft, as on checks."`
	Steps      []ExplainStep `json:"steps" doc:"Every level in chain order (the gate alone when a gate decided): 8 tenant levels, 8 org levels, levels 9–12."`
}

type explainOutput struct {
	Body Explanation
}

// registerExplain: the chain made visible, for people writing rules. The
// verdict is computed by the org's compiled policy, the one checks use.
func registerExplain(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "explain-permission", Method: http.MethodGet, Path: "/v1/permissions/explain",
		Summary: "Explain a permission",
		Description: "Shows which of the 12 levels would answer a check of this tool, tenant, resource and method, and what every " +
			"level holds for it — computed by the same compiled policy the check uses, so the verdict is the check's. " +
			"Nothing is recorded or billed and no parameters are validated.",
		Tags: []string{tagRules}, Errors: manageReadErrors,
	}, accessManageRead), func(ctx context.Context, in *explainInput) (*explainOutput, error) {
		p := mustPrincipal(ctx)
		names := [...]struct {
			loc string
			v   *string
		}{{"query.tenant", &in.Tenant}, {"query.resource", &in.Resource}, {"query.method", &in.Method}}
		for _, n := range names {
			if *n.v == "" {
				continue
			}
			norm, err := resolver.NormalizeName(*n.v)
			if err != nil {
				return nil, fieldProblem(n.loc, err.Error(), *n.v)
			}
			*n.v = norm
		}
		pol, err := s.policies.Get(ctx, p.OrgID)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		ex := pol.index.Explain(resolver.Input{Tool: in.Tool, Tenant: in.Tenant, Resource: in.Resource, Method: in.Method})
		d := ex.Decision
		out := &explainOutput{Body: Explanation{Tool: in.Tool, Tenant: in.Tenant, Resource: in.Resource, Method: in.Method,
			Permission: d.Permission.String(), Level: d.Level, LevelName: d.LevelName, Scope: d.Scope.String(),
			RuleID: d.RuleID, Reason: d.Reason, Steps: make([]ExplainStep, 0, len(ex.Steps))}}
		for _, st := range ex.Steps {
			v := ExplainStep{Level: st.Level, LevelName: st.LevelName, Scope: st.Scope.String(), Outcome: st.Outcome,
				Permission: st.Permission.String(), RuleID: st.RuleID}
			if st.Key != (resolver.Input{}) {
				v.Key = &ExplainKey{Tenant: st.Key.Tenant, Resource: st.Key.Resource, Tool: st.Key.Tool, Method: st.Key.Method}
			}
			out.Body.Steps = append(out.Body.Steps, v)
		}
		return out, nil
	})
}
