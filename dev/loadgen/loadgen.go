// Package loadgen is the load that the load tools generate. Its org has
// 1,000 tools in 20 categories, 100 tenants, 50 resources and 10,000 rules
// over the sixteen rule levels, generated from a fixed seed, so every run
// (and every engine it is loaded into) decides over the same org. With it
// come the checks the generator sends, the driver that sends them and
// reports throughput and latency, the metering cross-check, and the same
// org and policy in the form OPA takes them (policy.rego, OPAData), so a
// side-by-side run compares like with like.
package loadgen

import (
	"context"
	_ "embed" // policy.rego
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"

	"oakallow/resolver"
	"oakallow/store"
)

// Sizes of the generated org.
const (
	Tools      = 1000
	Categories = 20
	Tenants    = 100
	Resources  = 50
	Rules      = 10000
)

// Methods are the methods rules and checks use.
var Methods = []string{"read", "write", "delete", "send", "list"}

// Policy is the Rego form of the chain (SPEC §2), written to mirror
// resolver.Decide: data.oakallow.decision for an input
// {"tool","tenant","resource","method"} is the same decision, as the
// agreement test in dev/opa checks.
//
//go:embed policy.rego
var Policy string

// Org is the generated org.
type Org struct {
	Policy    resolver.Policy
	Tenants   []string
	Resources []string
}

// ToolName, TenantName, ResourceName and CategoryName are the names of the
// i-th tool, tenant, resource and category.
func ToolName(i int) string     { return fmt.Sprintf("tool_%04d", i) }
func TenantName(i int) string   { return fmt.Sprintf("tenant_%03d", i) }
func ResourceName(i int) string { return fmt.Sprintf("res_%02d", i) }
func CategoryName(i int) string { return fmt.Sprintf("category_%d", i) }

// Generate builds the org. The same seed gives the same org.
func Generate(seed uint64) Org {
	var o Org
	perms := []resolver.Permission{resolver.Allowed, resolver.RequiresApproval, resolver.PermissionUnset}
	for i := range Categories {
		o.Policy.Categories = append(o.Policy.Categories, resolver.Category{Name: CategoryName(i), DefaultPermission: perms[i%3]})
	}
	for i := range Tools {
		t := resolver.Tool{Name: ToolName(i), Category: CategoryName(i % Categories), Approved: i%5 == 0, Enabled: i%97 != 1, Draft: i%89 == 3}
		if i%7 == 0 {
			t.DefaultPermission = resolver.RequiresApproval
		}
		if i%11 == 4 || t.Draft && i%2 == 1 {
			t.DefaultPermission = resolver.Allowed
		}
		o.Policy.Tools = append(o.Policy.Tools, t)
	}
	for i := range Tenants {
		o.Tenants = append(o.Tenants, TenantName(i))
	}
	for i := range Resources {
		o.Resources = append(o.Resources, ResourceName(i))
	}
	// Rules: each key field present with the probability of the earlier
	// SQL seed (tenant 60 %, resource 30 %, tool 90 %, method 40 %),
	// distinct keys, permissions drawn evenly.
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	seen := make(map[[4]string]bool, Rules)
	rulePerms := []resolver.Permission{resolver.Allowed, resolver.RequiresApproval, resolver.Disabled}
	for len(o.Policy.Rules) < Rules {
		var k [4]string
		if r.Float64() < 0.6 {
			k[0] = TenantName(r.IntN(Tenants))
		}
		if r.Float64() < 0.3 {
			k[1] = ResourceName(r.IntN(Resources))
		}
		if r.Float64() < 0.9 {
			k[2] = ToolName(r.IntN(Tools))
		}
		if r.Float64() < 0.4 {
			k[3] = Methods[r.IntN(len(Methods))]
		}
		if seen[k] || k == [4]string{} {
			// No org wildcard: it would answer every check that no other
			// rule does, and levels 9–12 would never be reached.
			continue
		}
		seen[k] = true
		o.Policy.Rules = append(o.Policy.Rules, resolver.Rule{
			ID: fmt.Sprintf("rule_%d", len(o.Policy.Rules)+1), Tenant: k[0], Resource: k[1], Tool: k[2], Method: k[3],
			Permission: rulePerms[r.IntN(len(rulePerms))],
		})
	}
	return o
}

// Check is one permission check of the load.
type Check struct {
	Tool, Tenant, Resource, Method string
	// N is the one parameter of the call ({"n": N}).
	N int
}

// LoadCheck draws a check as the load generator sends it: a registered
// tool, a tenant, a resource and a method, all drawn evenly.
func LoadCheck(r *rand.Rand) Check {
	return Check{Tool: ToolName(r.IntN(Tools)), Tenant: TenantName(r.IntN(Tenants)),
		Resource: ResourceName(r.IntN(Resources)), Method: Methods[r.IntN(len(Methods))], N: r.IntN(1000)}
}

// VariedCheck draws a check that also leaves fields out and names tools,
// tenants and resources the org does not have, so a sample of them reaches
// every level and gate of the chain.
func VariedCheck(r *rand.Rand) Check {
	c := LoadCheck(r)
	switch r.IntN(20) {
	case 0:
		c.Tool = ToolName(Tools + r.IntN(10)) // not registered
	case 1:
		c.Tenant = "tenant_unknown"
	case 2:
		c.Resource = "res_unknown"
	}
	if r.IntN(3) == 0 {
		c.Tenant = ""
	}
	if r.IntN(3) == 0 {
		c.Resource = ""
	}
	if r.IntN(3) == 0 {
		c.Method = ""
	}
	return c
}

// Input is the resolver's input for c.
func (c Check) Input() resolver.Input {
	return resolver.Input{Tool: c.Tool, Tenant: c.Tenant, Resource: c.Resource, Method: c.Method}
}

// OPAInput is c as the input document of the Rego policy.
type OPAInput struct {
	Tool     string `json:"tool"`
	Tenant   string `json:"tenant,omitempty"`
	Resource string `json:"resource,omitempty"`
	Method   string `json:"method,omitempty"`
}

// OPAInput is c as the Rego policy's input.
func (c Check) OPAInput() OPAInput {
	return OPAInput{Tool: c.Tool, Tenant: c.Tenant, Resource: c.Resource, Method: c.Method}
}

// Decision is the policy's answer, in the fields both engines give; it is
// what the agreement checks compare.
type Decision struct {
	Permission string `json:"permission"`
	Level      int    `json:"level"`
	LevelName  string `json:"level_name"`
	Scope      string `json:"scope"`
	RuleID     string `json:"rule_id"`
	Reason     string `json:"reason"`
}

// FromResolver is d in the common form.
func FromResolver(d resolver.Decision) Decision {
	return Decision{Permission: d.Permission.String(), Level: d.Level, LevelName: d.LevelName, Scope: d.Scope.String(),
		RuleID: d.RuleID, Reason: d.Reason}
}

// RuleKeySeparator joins a rule's tenant, resource, tool and method into
// its key in OPAData. Names never hold control characters (they are
// refused on write), so no two keys can collide.
const RuleKeySeparator = "\x1f"

// OPAData is the org as the policy's data document: the whole of data,
// with the org under data.oakallow.
func (o Org) OPAData() ([]byte, error) {
	type tool struct {
		Category          string `json:"category"`
		DefaultPermission string `json:"default_permission"`
		Approved          bool   `json:"approved"`
		Enabled           bool   `json:"enabled"`
		Draft             bool   `json:"draft"`
	}
	type rule struct {
		ID         string `json:"id"`
		Permission string `json:"permission"`
	}
	doc := struct {
		Tools      map[string]tool   `json:"tools"`
		Categories map[string]string `json:"categories"`
		Rules      map[string]rule   `json:"rules"`
	}{make(map[string]tool), make(map[string]string), make(map[string]rule)}
	for _, t := range o.Policy.Tools {
		doc.Tools[t.Name] = tool{Category: t.Category, DefaultPermission: t.DefaultPermission.String(),
			Approved: t.Approved, Enabled: t.Enabled, Draft: t.Draft}
	}
	for _, c := range o.Policy.Categories {
		doc.Categories[c.Name] = c.DefaultPermission.String()
	}
	for _, r := range o.Policy.Rules {
		k := r.Tenant + RuleKeySeparator + r.Resource + RuleKeySeparator + r.Tool + RuleKeySeparator + r.Method
		doc.Rules[k] = rule{ID: r.ID, Permission: r.Permission.String()}
	}
	return json.Marshal(map[string]any{"oakallow": doc})
}

// Seed writes the org into orgID's catalog in PostgreSQL (rows keyed by
// the same names and rule ids, so oakallow's answers carry the rule ids
// OPAData does) and announces the change.
func (o Org) Seed(ctx context.Context, st *store.Store, orgID string) error {
	now := time.Now()
	id := func(kind, name string) string { return kind + "_" + orgID + "_" + name }
	var b pgx.Batch
	for _, c := range o.Policy.Categories {
		b.Queue(`INSERT INTO categories (id, org_id, name, default_permission, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)`,
			id("cat", c.Name), orgID, c.Name, nullable(c.DefaultPermission), now)
	}
	for _, t := range o.Tenants {
		b.Queue(`INSERT INTO tenants (id, org_id, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)`, id("ten", t), orgID, t, now)
	}
	for _, r := range o.Resources {
		b.Queue(`INSERT INTO resources (id, org_id, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)`, id("res", r), orgID, r, now)
	}
	for _, t := range o.Policy.Tools {
		status := "active"
		if t.Draft {
			status = "draft"
		}
		b.Queue(`INSERT INTO tools (id, org_id, name, category_id, risk_level, annotations_acknowledged, default_permission, approved, enabled, status, created_at, updated_at)
VALUES ($1, $2, $3, $4, 'medium', true, $5, $6, $7, $8, $9, $9)`,
			id("tool", t.Name), orgID, t.Name, id("cat", t.Category), nullable(t.DefaultPermission), t.Approved, t.Enabled, status, now)
	}
	ref := func(kind, name string) *string {
		if name == "" {
			return nil
		}
		s := id(kind, name)
		return &s
	}
	for _, r := range o.Policy.Rules {
		var method *string
		if r.Method != "" {
			method = &r.Method
		}
		b.Queue(`INSERT INTO rules (id, org_id, tenant_id, resource_id, tool_id, method, permission, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)`,
			r.ID, orgID, ref("ten", r.Tenant), ref("res", r.Resource), ref("tool", r.Tool), method, r.Permission.String(), now)
	}
	tx, err := st.Pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("seed load org: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := tx.SendBatch(ctx, &b).Close(); err != nil {
		return fmt.Errorf("seed load org: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("seed load org: %w", err)
	}
	return st.NotifyChange(ctx, "policy:"+orgID)
}

func nullable(p resolver.Permission) *string {
	if p == resolver.PermissionUnset {
		return nil
	}
	s := p.String()
	return &s
}
