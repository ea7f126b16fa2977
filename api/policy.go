package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"oakallow/api/runtime"
	"oakallow/resolver"
	"oakallow/store"
)

// orgPolicy is one org's compiled, immutable policy: the resolver index
// plus what the check path needs besides the verdict.
type orgPolicy struct {
	index *resolver.Index
	tools map[string]toolInfo // by name
	// schemas holds every compiled parameter schema by the SHA-256 of its
	// stored text, so the next load of the org compiles only new ones.
	schemas map[[32]byte]*jsonschema.Schema
	// snapshot is the database snapshot the policy was read from.
	snapshot pgSnapshot
	// src is the rows it was compiled from, so the next load reads only the
	// rows changed since snapshot.
	src *policySource
}

// policySource is an org's policy rows as read from one snapshot, by id.
type policySource struct {
	tools map[string]store.PolicyToolsRow
	cats  map[string]store.PolicyCategoriesRow
	rules map[string]store.PolicyRulesRow
}

type toolInfo = runtime.ToolInfo

// maxParallelLoads bounds how many orgs compile at once, so a burst of
// changes across many orgs cannot take every database connection (the key
// table reloads through the same pool).
const maxParallelLoads = 4

// maxLoadPause bounds the pause between back-to-back loads of one org.
const maxLoadPause = time.Second

// PolicyCache holds compiled policies for the orgs this process has served.
// Reads are a lock-free map load.
//
// Freshness: each org has a generation counter. A change notification, a
// management write on this replica and a first use each ask for a new
// generation; the org's loader goroutine (at most one per org) then loads
// until it has loaded a generation at least as new as the last one asked
// for. A load asked for after a change committed therefore reads that change,
// a notification that arrives during a load — cold or not — makes another
// load follow it, and many notifications during one load cost one more
// load, not one each. A notification names the transaction that made the
// change; when the policy served, or the load under way, was read from a
// snapshot that already sees it, it costs no load at all (the replica that
// took a write has loaded it before its own notification arrives). Loads run
// outside the change listener, so one org's slow load delays nobody else's
// changes, nor key revocations.
type PolicyCache struct {
	st      *store.Store
	log     *slog.Logger
	observe func(time.Duration, error) // each load's duration and result
	ctx     context.Context            // loads run under it; Stop ends it
	end     context.CancelFunc
	sem     chan struct{} // maxParallelLoads slots

	table atomic.Pointer[policyTable] // copy-on-write, written under mu
	mu    sync.Mutex
	orgs  map[string]*orgLoad

	schemaCompiles atomic.Int64 // schemas compiled by loads, for tests
	deltaLoads     atomic.Int64 // loads that read only the changed rows, for tests
	// beforeLoad, when set (tests only, under mu), runs before each load.
	beforeLoad func(orgID string)
}

type policyTable map[string]*orgPolicy

// orgLoad is one org's freshness state, guarded by PolicyCache.mu.
// Generations only grow. The table holds the org's policy exactly when
// loaded > failed.
type orgLoad struct {
	wanted  uint64        // newest generation asked for
	loaded  uint64        // generation of the policy in the table
	failed  uint64        // generation of the last failed load
	err     error         // that failure
	running bool          // the loader goroutine is running
	settled chan struct{} // closed and replaced each time a load ends
	// unseen holds the transactions announced since the load under way (if
	// any) started that the policy in the table does not see; another load
	// follows unless the one under way sees them all.
	unseen []uint64
}

// maxUnseen bounds orgLoad.unseen; beyond it, announcements become a plain
// request for another load.
const maxUnseen = 256

// NewPolicyCache returns an empty cache that reports each load's duration
// and result to observe. Stop ends its background loads.
func NewPolicyCache(st *store.Store, log *slog.Logger, observe func(time.Duration, error)) *PolicyCache {
	ctx, end := context.WithCancel(context.Background())
	c := &PolicyCache{st: st, log: log, observe: observe, ctx: ctx, end: end,
		sem: make(chan struct{}, maxParallelLoads), orgs: map[string]*orgLoad{}}
	empty := policyTable{}
	c.table.Store(&empty)
	go c.pruneLoop()
	return c
}

// The policy change log keeps changes for changeLogKeep; a policy loaded
// longer ago than that is read whole at its next change.
const (
	changeLogKeep  = time.Hour
	changeLogPrune = 10 * time.Minute
)

// pruneLoop prunes the policy change log every changeLogPrune until Stop.
// Every replica prunes; concurrent prunes are harmless.
func (c *PolicyCache) pruneLoop() {
	t := time.NewTicker(changeLogPrune)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			if _, err := c.PruneChanges(c.ctx, time.Now().Add(-changeLogKeep)); err != nil && c.ctx.Err() == nil {
				c.log.Warn("pruning the policy change log failed", "err", err)
			}
		}
	}
}

// PruneChanges deletes the policy change log's rows written before before,
// and returns how many. Policies read from a snapshot that may not see a
// pruned change are read whole next time.
func (c *PolicyCache) PruneChanges(ctx context.Context, before time.Time) (int, error) {
	n, err := c.st.PrunePolicyChanges(ctx, before)
	return int(n), err
}

// Stop ends the loads under way; their waiters get the context's error.
func (c *PolicyCache) Stop() { c.end() }

// Get returns the org's compiled policy, loading it on first use.
func (c *PolicyCache) Get(ctx context.Context, orgID string) (*orgPolicy, error) {
	if p, ok := (*c.table.Load())[orgID]; ok {
		return p, nil
	}
	c.mu.Lock()
	if p, ok := (*c.table.Load())[orgID]; ok {
		c.mu.Unlock()
		return p, nil
	}
	o := c.orgs[orgID]
	if o == nil {
		o = &orgLoad{settled: make(chan struct{})}
		c.orgs[orgID] = o
	}
	if !o.running {
		// The load that will answer starts after this call began.
		c.askLocked(orgID, o)
	}
	// A load under way started after the org left the table (or was never
	// there), so its result is as fresh as what this call can expect.
	target := o.wanted
	c.mu.Unlock()
	return c.await(ctx, orgID, target)
}

// Refresh asks for a new load of the org if this process holds its policy
// or is loading it, and returns at once with the generation that load will
// have (false: nothing held, the next Get loads from the database anyway).
// It is what the change listener calls, so it never waits.
func (c *PolicyCache) Refresh(orgID string) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.orgs[orgID]
	if o == nil || (!o.running && o.loaded <= o.failed) {
		return 0, false
	}
	return c.askLocked(orgID, o), true
}

// Announced handles a change notification of the org made by transaction
// xid. Nothing is loaded if this process does not hold the org, or if the
// policy it serves was read from a snapshot that sees xid; otherwise the
// org is loaded again, after the load under way unless that one sees xid.
// It never waits.
func (c *PolicyCache) Announced(orgID string, xid uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.announcedLocked(orgID, xid)
}

// announcedLocked is Announced with c.mu held; it returns the org's state,
// nil when nothing needs loading.
func (c *PolicyCache) announcedLocked(orgID string, xid uint64) *orgLoad {
	o := c.orgs[orgID]
	if o == nil || (!o.running && o.loaded <= o.failed) {
		return nil
	}
	if p := (*c.table.Load())[orgID]; p != nil && p.snapshot.sees(xid) {
		return nil
	}
	if len(o.unseen) >= maxUnseen {
		o.unseen = nil
		c.askLocked(orgID, o)
		return o
	}
	if !slices.Contains(o.unseen, xid) {
		o.unseen = append(o.unseen, xid)
	}
	if !o.running {
		o.running = true
		go c.loadLoop(orgID, o)
	}
	return o
}

// RefreshAll asks for a new load of every org this process holds (after a
// listener reconnect, when notifications may have been missed).
func (c *PolicyCache) RefreshAll() {
	c.mu.Lock()
	ids := make([]string, 0, len(c.orgs))
	for id := range c.orgs {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	for _, id := range ids {
		c.Refresh(id)
	}
}

// AwaitChange returns once this process serves the org's policy from a
// snapshot that sees transaction xid, which changed it and has committed —
// or holds no policy of the org, so that its next use loads one. A
// management write calls it before answering, so the replica that took the
// write never answers a check with the policy from before it (read your
// writes). Whichever load sees the change first — one the write's own
// notification started, or one under way — ends the wait. Other replicas
// converge by notification.
func (c *PolicyCache) AwaitChange(ctx context.Context, orgID string, xid uint64) error {
	c.mu.Lock()
	o := c.announcedLocked(orgID, xid)
	c.mu.Unlock()
	if o == nil {
		return nil
	}
	for {
		c.mu.Lock()
		p := (*c.table.Load())[orgID]
		if (p == nil && !o.running) || (p != nil && p.snapshot.sees(xid)) {
			// Seen; or the load failed and dropped the org's policy, so
			// nothing stale is served and the next check loads afresh.
			c.mu.Unlock()
			return nil
		}
		settled := o.settled
		c.mu.Unlock()
		select {
		case <-settled:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// askLocked asks for a new generation of the org and makes sure its loader
// runs. c.mu is held.
func (c *PolicyCache) askLocked(orgID string, o *orgLoad) uint64 {
	o.wanted++
	if !o.running {
		o.running = true
		go c.loadLoop(orgID, o)
	}
	return o.wanted
}

// await waits until a load of generation target or newer has ended and
// returns its policy or its error.
func (c *PolicyCache) await(ctx context.Context, orgID string, target uint64) (*orgPolicy, error) {
	for {
		c.mu.Lock()
		o := c.orgs[orgID]
		switch {
		case o.loaded >= target && o.loaded > o.failed:
			p := (*c.table.Load())[orgID]
			c.mu.Unlock()
			return p, nil
		case o.failed >= target:
			err := o.err
			c.mu.Unlock()
			return nil, err
		}
		settled := o.settled
		c.mu.Unlock()
		select {
		case <-settled:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// loadLoop is the org's loader: it loads until the newest generation asked
// for has been loaded (or has failed) and every announced transaction is
// seen, then ends.
func (c *PolicyCache) loadLoop(orgID string, o *orgLoad) {
	for {
		c.mu.Lock()
		gen := o.wanted
		if (gen <= o.loaded || gen <= o.failed) && len(o.unseen) == 0 {
			o.running = false
			c.mu.Unlock()
			return
		}
		prev := (*c.table.Load())[orgID]
		hook := c.beforeLoad
		c.mu.Unlock()
		if hook != nil {
			hook(orgID)
		}

		var p *orgPolicy
		var err error
		var took time.Duration
		select {
		case c.sem <- struct{}{}:
			start := time.Now()
			p, err = c.compile(c.ctx, orgID, prev)
			took = time.Since(start)
			c.observe(took, err)
			<-c.sem
		case <-c.ctx.Done():
			err = c.ctx.Err()
		}

		c.mu.Lock()
		if err != nil {
			// Fail closed: a policy that may miss a change is not served;
			// the next use of the org loads it again.
			o.failed, o.err = gen, err
			o.unseen = nil
			c.storeLocked(orgID, nil)
			if c.ctx.Err() == nil {
				c.log.Warn("policy load failed; the org's policy is dropped until it loads", "org", orgID, "err", err)
			}
		} else {
			o.loaded = gen
			o.unseen = slices.DeleteFunc(o.unseen, p.snapshot.sees)
			c.storeLocked(orgID, p)
		}
		close(o.settled)
		o.settled = make(chan struct{})
		again := o.wanted > gen || len(o.unseen) > 0
		c.mu.Unlock()

		if again {
			// The org changed during the load. Pause as long as the load
			// took before the next one, so an org that changes without
			// pause gets at most half of one core of each replica and the
			// other orgs' loads the rest. Its own next load waits at most
			// one load's time longer.
			select {
			case <-time.After(min(took, maxLoadPause)):
			case <-c.ctx.Done():
			}
		}
	}
}

// storeLocked puts the org's policy into the table (nil removes it). c.mu
// is held.
func (c *PolicyCache) storeLocked(orgID string, p *orgPolicy) {
	old := *c.table.Load()
	next := make(policyTable, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	if p == nil {
		delete(next, orgID)
	} else {
		next[orgID] = p
	}
	c.table.Store(&next)
}

// compile loads the org from the database and compiles it, reading only
// the rows changed since prev (if any) and reusing the schemas prev already
// compiled.
func (c *PolicyCache) compile(ctx context.Context, orgID string, prev *orgPolicy) (*orgPolicy, error) {
	p, compiled, delta, err := compileOrgPolicy(ctx, c.st, orgID, prev)
	c.schemaCompiles.Add(int64(compiled))
	if delta {
		c.deltaLoads.Add(1)
	}
	return p, err
}

// maxDeltaRows bounds the changed rows a load applies to the previous
// policy; a larger change (a bulk import, a tenant with thousands of
// rules deleted) reads the org whole.
const maxDeltaRows = 1000

// policyRows is what one load reads of an org, all from one snapshot.
type policyRows struct {
	snapshot pgSnapshot
	src      *policySource
	delta    bool                         // src is prev's with the changed rows applied
	schemas  map[[32]byte]json.RawMessage // the schemas not in known, by SHA-256
}

// readPolicy reads the org's tools, categories and rules, and the text of
// those parameter schemas prev does not hold, in one snapshot: a load never
// mixes the states before and after a change. With prev, it reads only the
// rows that the transactions prev's snapshot does not see changed
// (policy_changes, migration 026) and applies them to prev's rows.
func readPolicy(ctx context.Context, st *store.Store, orgID string, prev *orgPolicy) (policyRows, error) {
	var r policyRows
	err := st.InSnapshot(ctx, func(q *store.Queries) error {
		snap, err := q.CurrentSnapshot(ctx)
		if err != nil {
			return fmt.Errorf("read snapshot: %w", err)
		}
		if r.snapshot, err = parseSnapshot(snap); err != nil {
			return err
		}
		if prev != nil && prev.src != nil {
			if r.src, err = readPolicyDelta(ctx, q, orgID, prev); err != nil {
				return err
			}
			r.delta = r.src != nil
		}
		if r.src == nil {
			if r.src, err = readPolicyWhole(ctx, q, orgID); err != nil {
				return err
			}
		}
		var known map[[32]byte]*jsonschema.Schema
		if prev != nil {
			known = prev.schemas
		}
		var missing [][]byte
		seen := map[[32]byte]bool{}
		for _, t := range r.src.tools {
			if h, ok := schemaHash(t.SchemaSha256); ok && known[h] == nil && !seen[h] {
				seen[h] = true
				missing = append(missing, t.SchemaSha256)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		rows, err := q.PolicySchemas(ctx, store.PolicySchemasParams{OrgID: orgID, Hashes: missing})
		if err != nil {
			return fmt.Errorf("load parameter schemas: %w", err)
		}
		r.schemas = make(map[[32]byte]json.RawMessage, len(rows))
		for _, row := range rows {
			if h, ok := schemaHash(row.SchemaSha256); ok {
				r.schemas[h] = row.ParameterSchema
			}
		}
		return nil
	})
	return r, err
}

// readPolicyWhole reads every policy row of the org.
func readPolicyWhole(ctx context.Context, q *store.Queries, orgID string) (*policySource, error) {
	tools, err := q.PolicyTools(ctx, store.PolicyToolsParams{OrgID: orgID, Whole: true})
	if err != nil {
		return nil, fmt.Errorf("load policy tools: %w", err)
	}
	cats, err := q.PolicyCategories(ctx, store.PolicyCategoriesParams{OrgID: orgID, Whole: true})
	if err != nil {
		return nil, fmt.Errorf("load policy categories: %w", err)
	}
	rules, err := q.PolicyRules(ctx, store.PolicyRulesParams{OrgID: orgID, Whole: true})
	if err != nil {
		return nil, fmt.Errorf("load policy rules: %w", err)
	}
	src := &policySource{tools: make(map[string]store.PolicyToolsRow, len(tools)),
		cats: make(map[string]store.PolicyCategoriesRow, len(cats)), rules: make(map[string]store.PolicyRulesRow, len(rules))}
	src.add(tools, cats, rules)
	return src, nil
}

// add puts rows into src, replacing those with the same ids.
func (src *policySource) add(tools []store.PolicyToolsRow, cats []store.PolicyCategoriesRow, rules []store.PolicyRulesRow) {
	for _, t := range tools {
		src.tools[t.ID] = t
	}
	for _, c := range cats {
		src.cats[c.ID] = c
	}
	for _, r := range rules {
		src.rules[r.ID] = r
	}
}

// policyDelta is which rows of an org's policy some transactions changed, by
// table.
type policyDelta struct {
	tools, cats, rules, tenants, resources map[string]bool
}

// readPolicyDelta returns prev's rows with the changes since prev's snapshot
// applied, or nil when the org must be read whole: too many changed rows,
// or changes prev may not see that were pruned from the log.
//
// A changed row is read again by id; rows whose compiled form derives from
// a changed row of another table are read again by that reference (rules
// name their tenant, resource and tool; tools their category). Whatever a
// selection matched in prev is dropped first, so a deleted row, or one
// that no longer refers to the changed row, does not stay: a row whose own
// reference changed was itself changed, and is read by id.
func readPolicyDelta(ctx context.Context, q *store.Queries, orgID string, prev *orgPolicy) (*policySource, error) {
	horizon, err := q.PolicyChangeHorizon(ctx)
	if err != nil {
		return nil, fmt.Errorf("load policy change horizon: %w", err)
	}
	since := prev.snapshot.xmin
	if horizon < 0 || uint64(horizon) > since {
		return nil, nil // pruned changes prev may not see
	}
	running := make([]int64, len(prev.snapshot.running))
	for i, x := range prev.snapshot.running {
		running[i] = int64(x)
	}
	changes, err := q.PolicyChangesSince(ctx, store.PolicyChangesSinceParams{
		OrgID: orgID, Since: int64(since), Until: int64(prev.snapshot.xmax), Running: running,
		MaxRows: maxDeltaRows + 1})
	if err != nil {
		return nil, fmt.Errorf("load policy changes: %w", err)
	}
	if len(changes) > maxDeltaRows {
		return nil, nil
	}
	d := policyDelta{tools: map[string]bool{}, cats: map[string]bool{}, rules: map[string]bool{},
		tenants: map[string]bool{}, resources: map[string]bool{}}
	for _, ch := range changes {
		if ch.Xid >= 0 && prev.snapshot.sees(uint64(ch.Xid)) {
			continue
		}
		switch ch.Kind {
		case "tool":
			d.tools[ch.RowID] = true
		case "category":
			d.cats[ch.RowID] = true
		case "rule":
			d.rules[ch.RowID] = true
		case "tenant":
			d.tenants[ch.RowID] = true
		case "resource":
			d.resources[ch.RowID] = true
		default:
			return nil, fmt.Errorf("policy change of unknown kind %q", ch.Kind)
		}
	}
	if len(d.tools)+len(d.cats)+len(d.rules)+len(d.tenants)+len(d.resources) == 0 {
		return prev.src, nil
	}
	next := &policySource{tools: prev.src.tools, cats: prev.src.cats, rules: prev.src.rules}
	var tools []store.PolicyToolsRow
	var cats []store.PolicyCategoriesRow
	var rules []store.PolicyRulesRow
	if len(d.tools) > 0 || len(d.cats) > 0 {
		if tools, err = q.PolicyTools(ctx, store.PolicyToolsParams{OrgID: orgID,
			Ids: slices.Collect(maps.Keys(d.tools)), CategoryIds: slices.Collect(maps.Keys(d.cats))}); err != nil {
			return nil, fmt.Errorf("load changed policy tools: %w", err)
		}
		next.tools = maps.Clone(prev.src.tools)
		maps.DeleteFunc(next.tools, func(id string, t store.PolicyToolsRow) bool {
			return d.tools[id] || (t.CategoryID != nil && d.cats[*t.CategoryID])
		})
	}
	if len(d.cats) > 0 {
		if cats, err = q.PolicyCategories(ctx, store.PolicyCategoriesParams{OrgID: orgID,
			Ids: slices.Collect(maps.Keys(d.cats))}); err != nil {
			return nil, fmt.Errorf("load changed policy categories: %w", err)
		}
		next.cats = maps.Clone(prev.src.cats)
		maps.DeleteFunc(next.cats, func(id string, _ store.PolicyCategoriesRow) bool { return d.cats[id] })
	}
	if len(d.rules) > 0 || len(d.tools) > 0 || len(d.tenants) > 0 || len(d.resources) > 0 {
		if rules, err = q.PolicyRules(ctx, store.PolicyRulesParams{OrgID: orgID,
			Ids: slices.Collect(maps.Keys(d.rules)), ToolIds: slices.Collect(maps.Keys(d.tools)),
			TenantIds: slices.Collect(maps.Keys(d.tenants)), ResourceIds: slices.Collect(maps.Keys(d.resources))}); err != nil {
			return nil, fmt.Errorf("load changed policy rules: %w", err)
		}
		in := func(set map[string]bool, id *string) bool { return id != nil && set[*id] }
		next.rules = maps.Clone(prev.src.rules)
		maps.DeleteFunc(next.rules, func(id string, r store.PolicyRulesRow) bool {
			return d.rules[id] || in(d.tools, r.ToolID) || in(d.tenants, r.TenantID) || in(d.resources, r.ResourceID)
		})
	}
	next.add(tools, cats, rules)
	return next, nil
}

// pgSnapshot is a PostgreSQL snapshot (pg_current_snapshot): which
// transactions' effects the statements that used it saw.
type pgSnapshot struct {
	xmin, xmax uint64   // every xid below xmin had ended; none from xmax on had
	running    []uint64 // xids in [xmin, xmax) still running, so not seen
}

// parseSnapshot parses the text form "xmin:xmax:xip,xip,…".
func parseSnapshot(s string) (pgSnapshot, error) {
	var snap pgSnapshot
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return snap, fmt.Errorf("snapshot %q: not xmin:xmax:xip", s)
	}
	var err error
	if snap.xmin, err = strconv.ParseUint(parts[0], 10, 64); err != nil {
		return snap, fmt.Errorf("snapshot %q: %w", s, err)
	}
	if snap.xmax, err = strconv.ParseUint(parts[1], 10, 64); err != nil {
		return snap, fmt.Errorf("snapshot %q: %w", s, err)
	}
	if parts[2] != "" {
		for x := range strings.SplitSeq(parts[2], ",") {
			xid, err := strconv.ParseUint(x, 10, 64)
			if err != nil {
				return snap, fmt.Errorf("snapshot %q: %w", s, err)
			}
			snap.running = append(snap.running, xid)
		}
	}
	return snap, nil
}

// sees reports whether the effects of transaction xid, which has committed
// (notifications are delivered only at commit), are visible in the snapshot.
func (s pgSnapshot) sees(xid uint64) bool {
	switch {
	case xid < s.xmin:
		return true
	case xid >= s.xmax:
		return false
	}
	return !slices.Contains(s.running, xid)
}

// schemaHash converts a SHA-256 from the database; false for none.
func schemaHash(b []byte) ([32]byte, bool) {
	var h [32]byte
	if len(b) != len(h) {
		return h, false
	}
	return [32]byte(b), true
}

// compileOrgPolicy loads the org's tools, categories and rules and compiles
// them: only the rows changed since prev's snapshot when it can (delta). A
// parameter schema prev already compiled (by the SHA-256 of its stored
// text) is reused; compiled counts the schemas it had to compile.
func compileOrgPolicy(ctx context.Context, st *store.Store, orgID string,
	prev *orgPolicy) (p *orgPolicy, compiled int, delta bool, err error) {
	rows, err := readPolicy(ctx, st, orgID, prev)
	if err != nil {
		return nil, 0, false, err
	}
	src := rows.src
	if rows.delta && src == prev.src {
		// Nothing this org's policy is made of changed.
		q := *prev
		q.snapshot = rows.snapshot
		return &q, 0, true, nil
	}
	var known map[[32]byte]*jsonschema.Schema
	if prev != nil {
		known = prev.schemas
	}
	pol := resolver.Policy{
		Tools:      make([]resolver.Tool, 0, len(src.tools)),
		Categories: make([]resolver.Category, 0, len(src.cats)),
		Rules:      make([]resolver.Rule, 0, len(src.rules)),
	}
	infos := make(map[string]toolInfo, len(src.tools))
	schemas := map[[32]byte]*jsonschema.Schema{}
	for _, t := range src.tools {
		dp, err := parseOptPermission(t.DefaultPermission)
		if err != nil {
			return nil, compiled, false, err
		}
		pol.Tools = append(pol.Tools, resolver.Tool{
			Name: t.Name, Category: t.Category, DefaultPermission: dp,
			Approved: t.Approved, Enabled: t.Enabled, Draft: t.Status == "draft",
		})
		info := toolInfo{ID: t.ID, RequiresSecondApproval: t.RequiresSecondApproval,
			TimeoutSeconds: t.ApprovalTimeoutSeconds, Draft: t.Status == "draft"}
		if h, ok := schemaHash(t.SchemaSha256); ok {
			if info.Schema = schemas[h]; info.Schema == nil {
				info.Schema = known[h]
			}
			if info.Schema == nil {
				raw, ok := rows.schemas[h]
				if !ok {
					return nil, compiled, false, fmt.Errorf("tool %s: parameter schema missing from its snapshot", t.ID)
				}
				// The schema was validated when it was written; a failure
				// here means the row was changed behind our back, so fail
				// closed.
				compiled++
				if info.Schema, err = compileSchema(raw); err != nil {
					return nil, compiled, false, fmt.Errorf("tool %s: stored parameter schema: %w", t.ID, err)
				}
			}
			schemas[h] = info.Schema
		}
		infos[t.Name] = info
	}
	for _, c := range src.cats {
		dp, err := parseOptPermission(c.DefaultPermission)
		if err != nil {
			return nil, compiled, false, err
		}
		pol.Categories = append(pol.Categories, resolver.Category{Name: c.Name, DefaultPermission: dp})
	}
	for _, r := range src.rules {
		perm, err := resolver.ParsePermission(r.Permission)
		if err != nil {
			return nil, compiled, false, err
		}
		pol.Rules = append(pol.Rules, resolver.Rule{ID: r.ID, Tenant: r.Tenant, Resource: r.Resource,
			Tool: r.Tool, Method: r.Method, Permission: perm})
	}
	ix, err := resolver.Compile(pol)
	if err != nil {
		return nil, compiled, false, fmt.Errorf("compile policy of %s: %w", orgID, err)
	}
	return &orgPolicy{index: ix, tools: infos, schemas: schemas, snapshot: rows.snapshot, src: src}, compiled, rows.delta, nil
}

func parseOptPermission(s *string) (resolver.Permission, error) {
	if s == nil {
		return resolver.PermissionUnset, nil
	}
	return resolver.ParsePermission(*s)
}

// Parameter schemas: bounded size, nesting and number of objects and
// arrays, and no $ref may leave the document. The compiler's cost grows
// faster than linearly with nesting (3,000 nested "not" fit in 32 KiB and
// take minutes) and with the number of subschemas, so bytes alone do not
// bound it; within these limits a schema compiles in milliseconds.
const (
	maxSchemaBytes      = 32 << 10
	maxSchemaDepth      = 64   // nested JSON objects and arrays
	maxSchemaContainers = 1000 // JSON objects and arrays in all
)

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
	if err := checkSchemaShape(doc); err != nil {
		return nil, err
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
	if err := checkSchemaExpansion(s); err != nil {
		return nil, err
	}
	return s, nil
}

// maxSchemaExpansion bounds how many subschemas a parameter schema amounts
// to once every $ref is replaced by what it refers to. Validating a check's
// parameters takes up to that many steps per parameter value, and
// references can make a small schema exponentially large: 22 definitions,
// each referring twice to the one before (1.4 KB), took 20 s of CPU per
// check.
const maxSchemaExpansion = 10_000

// checkSchemaExpansion enforces maxSchemaExpansion on a compiled schema. A
// schema that refers to itself has no bound and is refused, as are
// $dynamicRef and $recursiveRef, whose targets are chosen while validating.
func checkSchemaExpansion(root *jsonschema.Schema) error {
	size := map[*jsonschema.Schema]int{} // expansion of each schema done
	onPath := map[*jsonschema.Schema]bool{}
	var visit func(s *jsonschema.Schema) (int, error)
	visit = func(s *jsonschema.Schema) (int, error) {
		if n, ok := size[s]; ok {
			return n, nil
		}
		if onPath[s] {
			return 0, errors.New("schema refers to itself ($ref cycle); recursive parameter schemas are not supported")
		}
		if s.DynamicRef != nil || s.RecursiveRef != nil {
			return 0, errors.New("$dynamicRef and $recursiveRef are not supported in parameter schemas")
		}
		onPath[s] = true
		n := 1
		for _, c := range subschemas(s) {
			k, err := visit(c)
			if err != nil {
				return 0, err
			}
			if n += k; n > maxSchemaExpansion {
				return 0, fmt.Errorf("schema expands to more than %d subschemas once its $refs are followed", maxSchemaExpansion)
			}
		}
		delete(onPath, s)
		size[s] = n
		return n, nil
	}
	_, err := visit(root)
	return err
}

// subschemas lists the schemas s applies, directly or by reference.
func subschemas(s *jsonschema.Schema) []*jsonschema.Schema {
	var out []*jsonschema.Schema
	add := func(cs ...*jsonschema.Schema) {
		for _, c := range cs {
			if c != nil {
				out = append(out, c)
			}
		}
	}
	addAny := func(v any) { // nil, bool, *Schema or []*Schema
		switch v := v.(type) {
		case *jsonschema.Schema:
			add(v)
		case []*jsonschema.Schema:
			add(v...)
		}
	}
	add(s.Ref, s.Not, s.If, s.Then, s.Else, s.PropertyNames, s.UnevaluatedProperties, s.Contains,
		s.Items2020, s.UnevaluatedItems, s.ContentSchema)
	add(s.AllOf...)
	add(s.AnyOf...)
	add(s.OneOf...)
	add(s.PrefixItems...)
	add(slices.Collect(maps.Values(s.Properties))...)
	add(slices.Collect(maps.Values(s.PatternProperties))...)
	add(slices.Collect(maps.Values(s.DependentSchemas))...)
	for _, d := range s.Dependencies {
		addAny(d)
	}
	addAny(s.AdditionalProperties)
	addAny(s.Items)
	addAny(s.AdditionalItems)
	return out
}

// checkSchemaShape enforces maxSchemaDepth and maxSchemaContainers on a
// decoded schema, stopping at the first excess.
func checkSchemaShape(doc any) error {
	containers := 0
	var walk func(v any, depth int) error
	walk = func(v any, depth int) error {
		var children []any
		switch v := v.(type) {
		case map[string]any:
			children = slices.Collect(maps.Values(v))
		case []any:
			children = v
		default:
			return nil
		}
		if depth > maxSchemaDepth {
			return fmt.Errorf("schema nests deeper than %d levels of objects and arrays", maxSchemaDepth)
		}
		if containers++; containers > maxSchemaContainers {
			return fmt.Errorf("schema has more than %d objects and arrays", maxSchemaContainers)
		}
		for _, c := range children {
			if err := walk(c, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(doc, 1)
}

type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("external schema references are not allowed: %s", url)
}

// applyPolicyChange handles "policy:<org>:<xid>" (NotifyPolicyChange) and
// "policy:<org>" (NotifyChange: no transaction named, always reload).
func (s *Server) applyPolicyChange(payload string) error {
	rest, ok := strings.CutPrefix(payload, "policy:")
	if !ok || rest == "" {
		return fmt.Errorf("unknown change notification %q", payload)
	}
	org, xidText, named := strings.Cut(rest, ":")
	if !named {
		s.policies.Refresh(org)
		return nil
	}
	xid, err := strconv.ParseUint(xidText, 10, 64)
	if err != nil {
		s.policies.Refresh(org)
		return fmt.Errorf("change notification %q: transaction id: %w", payload, err)
	}
	s.policies.Announced(org, xid)
	return nil
}
