package resolver

import (
	"slices"
	"testing"
	"time"
)

// sink keeps the compiler from discarding Decide calls in benchmarks.
var sink Decision

// BenchmarkDecide runs the testdata cases (one sub-benchmark per file,
// cycling through its checks) and then a generated org of 1,000 tools,
// 10,000 rules and 100 tenants, the size the performance targets are
// stated for.
//
//	go test ./resolver -bench . -benchmem -run '^$'
func BenchmarkDecide(b *testing.B) {
	for _, f := range loadCases(b) {
		inputs := make([]Input, len(f.Checks))
		for i, c := range f.Checks {
			inputs[i] = c.input()
		}
		b.Run(f.name, func(b *testing.B) {
			benchmarkInputs(b, f.index, inputs)
		})
	}

	p, inputs := generateOrg(42, benchmarkOrg)
	ix, err := Compile(p)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("generated", func(b *testing.B) {
		benchmarkInputs(b, ix, inputs)
	})
	// The same checks grouped by the scope that answers them: a check
	// answered by a fallback has visited every level that could match.
	byScope := map[Scope][]Input{}
	for _, in := range inputs {
		s := ix.Decide(in).Scope
		byScope[s] = append(byScope[s], in)
	}
	for s := ScopeGate; s <= ScopeFallback; s++ {
		b.Run("generated_"+s.String(), func(b *testing.B) {
			benchmarkInputs(b, ix, byScope[s])
		})
	}
	// The same calls timed one by one, for the latency distribution the
	// target is stated in; the clock reads add a little to each sample.
	b.Run("generated_latency", func(b *testing.B) {
		b.ReportAllocs()
		samples := make([]time.Duration, 1<<16)
		n := 0
		for b.Loop() {
			in := inputs[n%len(inputs)]
			start := time.Now()
			sink = ix.Decide(in)
			samples[n%len(samples)] = time.Since(start)
			n++
		}
		samples = samples[:min(n, len(samples))]
		slices.Sort(samples)
		b.ReportMetric(float64(samples[len(samples)/2]), "p50-ns")
		b.ReportMetric(float64(samples[len(samples)*99/100]), "p99-ns")
	})
}

func benchmarkInputs(b *testing.B, ix *Index, inputs []Input) {
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		sink = ix.Decide(inputs[i])
		if i++; i == len(inputs) {
			i = 0
		}
	}
}

// BenchmarkCompile measures building the index for the generated org, the
// cost paid on every rule change.
func BenchmarkCompile(b *testing.B) {
	p, _ := generateOrg(42, benchmarkOrg)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(p); err != nil {
			b.Fatal(err)
		}
	}
}
