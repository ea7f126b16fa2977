package resolver

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// allLevelNames lists every LevelName a Decision can carry.
func allLevelNames() []string {
	names := []string{ReasonToolNotRegistered, ReasonToolDisabled}
	for _, l := range ruleLevels {
		names = append(names, l.tenantName, l.orgName)
	}
	return append(names, LevelNameToolDefault, LevelNameCategoryDefault, LevelNameToolApproved, LevelNameFailSafe)
}

func TestDecide(t *testing.T) {
	t.Parallel()
	for _, f := range loadCases(t) {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range f.Checks {
				t.Run(c.Name, func(t *testing.T) {
					t.Parallel()
					want := c.want(t)
					require.Equal(t, want, f.index.Decide(c.input()))
					// The YAML expectations are themselves checked against the
					// plain reading of the specification.
					require.Equal(t, want, referenceDecide(f.Policy.policy(), c.input()), "reference implementation")
				})
			}
		})
	}
}

// TestDecideCasesCoverEveryLevel keeps testdata honest: every rule level in
// both scopes, every fallback and both gates must decide at least one case.
func TestDecideCasesCoverEveryLevel(t *testing.T) {
	t.Parallel()
	want := map[string]bool{}
	for _, name := range allLevelNames() {
		want[name] = true
	}
	require.Len(t, want, 22)

	got := map[string]bool{}
	for _, f := range loadCases(t) {
		for _, c := range f.Checks {
			got[f.index.Decide(c.input()).LevelName] = true
		}
	}
	require.Equal(t, want, got)
}

// TestDecideMatchesReference compares Decide with referenceDecide on dense
// random orgs, with and without an org wildcard, where the checks reach
// every level of the chain.
func TestDecideMatchesReference(t *testing.T) {
	t.Parallel()
	withWildcard := denseOrg
	withWildcard.orgWildcard = true
	orgs := []struct {
		name string
		size orgSize
	}{{"dense", denseOrg}, {"dense with org wildcard", withWildcard}}

	var mu sync.Mutex
	reached := map[string]int{}
	t.Cleanup(func() {
		// The comparison only means something if the generated checks
		// reach every level, not just a few.
		if t.Failed() {
			return
		}
		for _, name := range allLevelNames() {
			if reached[name] == 0 {
				t.Errorf("no generated check was decided at %s", name)
			}
		}
	})
	for _, org := range orgs {
		for seed := uint64(1); seed <= 3; seed++ {
			t.Run(fmt.Sprintf("%s seed %d", org.name, seed), func(t *testing.T) {
				t.Parallel()
				p, inputs := generateOrg(seed, org.size)
				ix, err := Compile(p)
				require.NoError(t, err)

				levels := map[string]int{}
				for _, in := range inputs {
					want := referenceDecide(p, in)
					require.Equal(t, want, ix.Decide(in), "input %+v", in)
					levels[want.LevelName]++
				}
				mu.Lock()
				defer mu.Unlock()
				for name, n := range levels {
					reached[name] += n
				}
			})
		}
	}
}

// TestDecideDoesNotAllocate is deliberately not parallel: AllocsPerRun
// counts every allocation in the process, so it must run while parallel
// tests are paused.
func TestDecideDoesNotAllocate(t *testing.T) {
	p, inputs := generateOrg(42, benchmarkOrg)
	ix, err := Compile(p)
	require.NoError(t, err)

	// Find one generated check for each outcome of interest, so the test
	// covers the rule, fallback and gate paths and not only one of them.
	byScope := map[Scope]Input{}
	for _, in := range inputs {
		if d := ix.Decide(in); byScope[d.Scope] == (Input{}) {
			byScope[d.Scope] = in
		}
	}
	require.Len(t, byScope, 4, "generated org should produce every scope")

	for scope, in := range byScope {
		t.Run(scope.String(), func(t *testing.T) {
			var d Decision
			allocs := testing.AllocsPerRun(1000, func() { d = ix.Decide(in) })
			require.Equal(t, scope, d.Scope)
			require.Zero(t, allocs)
		})
	}
}

// TestDecideConcurrent runs Decide from many goroutines on one Index; under
// -race it proves Decide only reads.
func TestDecideConcurrent(t *testing.T) {
	t.Parallel()
	p, inputs := generateOrg(7, denseOrg)
	ix, err := Compile(p)
	require.NoError(t, err)

	want := make([]Decision, len(inputs))
	for i, in := range inputs {
		want[i] = ix.Decide(in)
	}

	const workers = 8
	got := make([][]Decision, workers)
	var wg sync.WaitGroup
	for w := range workers {
		got[w] = make([]Decision, len(inputs))
		wg.Go(func() {
			// Each worker walks the checks from a different starting point so
			// that goroutines read the same entries at the same time.
			for i := range inputs {
				j := (i + w*len(inputs)/workers) % len(inputs)
				got[w][j] = ix.Decide(inputs[j])
			}
		})
	}
	wg.Wait()
	for w := range workers {
		require.Equal(t, want, got[w], "worker %d", w)
	}
}

func TestIndexToolAndStats(t *testing.T) {
	t.Parallel()
	deploy := Tool{Name: "deploy", Category: "ops", DefaultPermission: RequiresApproval, Approved: true, Enabled: true, Draft: true}
	ix, err := Compile(Policy{
		Tools:      []Tool{deploy, {Name: "query", Enabled: true}},
		Categories: []Category{{Name: "ops"}},
		Rules: []Rule{
			{ID: "org-all", Permission: Allowed},
			{ID: "acme-all", Tenant: "acme", Permission: Disabled},
			{ID: "ghost", Tool: "ghost", Permission: Disabled},
		},
	})
	require.NoError(t, err)

	got, ok := ix.Tool("deploy")
	require.True(t, ok)
	require.Equal(t, deploy, got)
	_, ok = ix.Tool("ghost")
	require.False(t, ok)

	tools, rules := ix.Stats()
	require.Equal(t, 2, tools)
	require.Equal(t, 3, rules)
}
