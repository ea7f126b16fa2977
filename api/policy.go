package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"oakallow/resolver"
	"oakallow/store"
)

// orgPolicy is one org's compiled, immutable policy: the resolver index
// plus what the check path needs besides the verdict.
type orgPolicy struct {
	index    *resolver.Index
	tools    map[string]toolInfo // by name
	loadedAt time.Time
}

type toolInfo struct {
	ID                     string
	Schema                 *jsonschema.Schema // nil: parameters are not validated
	RequiresSecondApproval bool
	TimeoutSeconds         *int32
	Draft                  bool
}

// PolicyCache holds compiled policies for the orgs this process has served.
// Reads are a lock-free map load; a change notification recompiles the org
// in the background of the request path and swaps the pointer.
type PolicyCache struct {
	st *store.Store

	mu    sync.Mutex                  // serialises writers of orgs
	orgs  atomic.Pointer[policyTable] // copy-on-write
	locks sync.Map                    // org id → *sync.Mutex, serialises loads per org
}

type policyTable map[string]*orgPolicy

// NewPolicyCache returns an empty cache.
func NewPolicyCache(st *store.Store) *PolicyCache {
	c := &PolicyCache{st: st}
	empty := policyTable{}
	c.orgs.Store(&empty)
	return c
}

// Get returns the org's compiled policy, loading it on first use.
func (c *PolicyCache) Get(ctx context.Context, orgID string) (*orgPolicy, error) {
	if p, ok := (*c.orgs.Load())[orgID]; ok {
		return p, nil
	}
	return c.load(ctx, orgID, false)
}

// Refresh recompiles the org if this process holds it.
func (c *PolicyCache) Refresh(ctx context.Context, orgID string) error {
	if _, ok := (*c.orgs.Load())[orgID]; !ok {
		return nil
	}
	_, err := c.load(ctx, orgID, true)
	return err
}

// RefreshAll recompiles every org this process holds (after a listener
// reconnect, when notifications may have been missed).
func (c *PolicyCache) RefreshAll(ctx context.Context) error {
	var errs []error
	for id := range *c.orgs.Load() {
		if _, err := c.load(ctx, id, true); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// load compiles the org from the database. Loads of one org are serialised,
// so a load started after a change notification always finishes last.
func (c *PolicyCache) load(ctx context.Context, orgID string, force bool) (*orgPolicy, error) {
	m, _ := c.locks.LoadOrStore(orgID, &sync.Mutex{})
	lock := m.(*sync.Mutex)
	lock.Lock()
	defer lock.Unlock()
	if !force {
		if p, ok := (*c.orgs.Load())[orgID]; ok {
			return p, nil
		}
	}
	p, err := compileOrgPolicy(ctx, c.st, orgID)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	old := *c.orgs.Load()
	next := make(policyTable, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[orgID] = p
	c.orgs.Store(&next)
	c.mu.Unlock()
	return p, nil
}

func compileOrgPolicy(ctx context.Context, st *store.Store, orgID string) (*orgPolicy, error) {
	tools, err := st.PolicyTools(ctx, orgID)
	if err != nil {
		return nil, fmt.Errorf("load policy tools: %w", err)
	}
	cats, err := st.PolicyCategories(ctx, orgID)
	if err != nil {
		return nil, fmt.Errorf("load policy categories: %w", err)
	}
	rules, err := st.PolicyRules(ctx, orgID)
	if err != nil {
		return nil, fmt.Errorf("load policy rules: %w", err)
	}
	pol := resolver.Policy{
		Tools:      make([]resolver.Tool, 0, len(tools)),
		Categories: make([]resolver.Category, 0, len(cats)),
		Rules:      make([]resolver.Rule, 0, len(rules)),
	}
	infos := make(map[string]toolInfo, len(tools))
	for _, t := range tools {
		dp, err := parseOptPermission(t.DefaultPermission)
		if err != nil {
			return nil, err
		}
		pol.Tools = append(pol.Tools, resolver.Tool{
			Name: t.Name, Category: t.Category, DefaultPermission: dp,
			Approved: t.Approved, Enabled: t.Enabled, Draft: t.Status == "draft",
		})
		info := toolInfo{ID: t.ID, RequiresSecondApproval: t.RequiresSecondApproval,
			TimeoutSeconds: t.ApprovalTimeoutSeconds, Draft: t.Status == "draft"}
		if len(t.ParameterSchema) > 0 && !bytes.Equal(t.ParameterSchema, []byte("null")) {
			// The schema was validated when it was written; a failure here
			// means the row was changed behind our back, so fail closed.
			if info.Schema, err = compileSchema(t.ParameterSchema); err != nil {
				return nil, fmt.Errorf("tool %s: stored parameter schema: %w", t.ID, err)
			}
		}
		infos[t.Name] = info
	}
	for _, c := range cats {
		dp, err := parseOptPermission(c.DefaultPermission)
		if err != nil {
			return nil, err
		}
		pol.Categories = append(pol.Categories, resolver.Category{Name: c.Name, DefaultPermission: dp})
	}
	for _, r := range rules {
		p, err := resolver.ParsePermission(r.Permission)
		if err != nil {
			return nil, err
		}
		pol.Rules = append(pol.Rules, resolver.Rule{ID: r.ID, Tenant: r.Tenant, Resource: r.Resource,
			Tool: r.Tool, Method: r.Method, Permission: p})
	}
	ix, err := resolver.Compile(pol)
	if err != nil {
		return nil, fmt.Errorf("compile policy of %s: %w", orgID, err)
	}
	return &orgPolicy{index: ix, tools: infos, loadedAt: time.Now()}, nil
}

func parseOptPermission(s *string) (resolver.Permission, error) {
	if s == nil {
		return resolver.PermissionUnset, nil
	}
	return resolver.ParsePermission(*s)
}

// Parameter schemas: bounded size, and no $ref may leave the document.
const maxSchemaBytes = 32 << 10

// compileSchema compiles a tool's parameter JSON Schema (draft 2020-12 by
// default). References to anything outside the schema itself are refused:
// the compiler has no loader for remote or file URLs.
func compileSchema(raw []byte) (*jsonschema.Schema, error) {
	if len(raw) > maxSchemaBytes {
		return nil, fmt.Errorf("schema is larger than %d bytes", maxSchemaBytes)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("schema is not valid JSON: %w", err)
	}
	if _, ok := doc.(map[string]any); !ok {
		if _, isBool := doc.(bool); !isBool {
			return nil, errors.New("schema must be a JSON object")
		}
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(noLoader{})
	c.DefaultDraft(jsonschema.Draft2020)
	const url = "urn:oakallow:tool-parameters"
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	s, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("schema: %s", strings.TrimPrefix(err.Error(), "jsonschema: "))
	}
	return s, nil
}

type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("external schema references are not allowed: %s", url)
}

func (s *Server) applyPolicyChange(ctx context.Context, payload string) error {
	org, ok := strings.CutPrefix(payload, "policy:")
	if !ok {
		return fmt.Errorf("unknown change notification %q", payload)
	}
	return s.policies.Refresh(ctx, org)
}

func (s *Server) reloadPolicies(ctx context.Context) error {
	return s.policies.RefreshAll(ctx)
}
