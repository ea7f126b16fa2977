package api

import (
	"context"
	"time"

	"oakallow/api/runtime"
	"oakallow/resolver"
	"oakallow/store"
)

// The REST operations and the MCP connector serve the runtime calls (check,
// approval requests, mint, verify) through one runtime.Service, built here
// over the server's caches and recorder.

// newRuntime builds the runtime core once the recorder exists (Start).
func (s *Server) newRuntime() (*runtime.Service, error) {
	var handOff func(context.Context, []store.WebhookDelivery)
	if s.deps.Activities != nil {
		handOff = s.deps.Activities.HandOff
	}
	return runtime.New(runtime.Deps{
		HandOff:   handOff,
		Store:     s.deps.Store,
		Recorder:  s.recorder,
		Policies:  s.policies,
		Keyring:   s.keyring,
		SecretBox: s.deps.SecretBox,
		Temporal:  s.deps.Temporal,
		Logger:    s.log,
		Now:       s.deps.Now,
		RequestID: requestIDFrom,
		ObserveCheck: func(d time.Duration, permission, scope string) {
			s.metrics.checkLatency.Observe(d.Seconds())
			s.metrics.verdicts.WithLabelValues(permission, scope).Inc()
		},
	})
}

// caller is the principal as the runtime names the caller in the audit log.
// Management keys and people (reviewers, owners, admins) read every approval
// of the org; standard keys, agent identities and OAuth grants read only
// those they requested (runtime.Caller.ReadsAllApprovals).
func (p Principal) caller() runtime.Caller {
	return runtime.Caller{OrgID: p.OrgID, TeamID: p.TeamID, Kind: p.Kind, ID: p.ActorID(),
		ReadsAllApprovals: p.Kind == PrincipalUser || p.Kind == PrincipalAPIKey && p.Tier == TierManagement}
}

// Policy implements runtime.Policies.
func (c *PolicyCache) Policy(ctx context.Context, orgID string) (runtime.Policy, error) {
	p, err := c.Get(ctx, orgID)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Decide implements runtime.Policy.
func (p *orgPolicy) Decide(in resolver.Input) resolver.Decision { return p.index.Decide(in) }

// Tool implements runtime.Policy.
func (p *orgPolicy) Tool(name string) (runtime.ToolInfo, bool) {
	t, ok := p.tools[name]
	return t, ok
}
