package pii

import (
	"encoding/json"
	"strings"
	"testing"
)

// benchText returns a reason of about n bytes built from repeating s.
func benchText(s string, n int) string {
	return strings.Repeat(s, n/len(s)+1)[:n]
}

var (
	cleanReason = benchText("The agent wants to rotate the staging database credentials before release 1.26.8 on 2024-01-15, order ORD-2024-001234. ", 2000)
	dirtyReason = benchText("Refund jane.doe@example.com card 4111 1111 1111 1111 phone +1 415 555 2671 from 203.0.113.7 key sk_live_51HxyzABCdef ok. ", 2000)
)

func BenchmarkScrub(b *testing.B) {
	for _, bc := range []struct {
		name string
		in   string
	}{
		{"clean_2000", cleanReason},
		{"dirty_2000", dirtyReason},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.in)))
			for b.Loop() {
				_ = Scrub(bc.in)
			}
		})
	}
}

func BenchmarkScrubJSON(b *testing.B) {
	raw, err := json.Marshal(map[string]any{
		"to":      "jane.doe@example.com",
		"subject": "Refund for order ORD-2024-001234",
		"body":    dirtyReason[:500],
		"items":   []any{map[string]any{"sku": "A-1", "qty": 2}, map[string]any{"sku": "B-7", "qty": 1}},
		"pan":     4111111111111111,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := ScrubJSON(raw); err != nil {
			b.Fatal(err)
		}
	}
}
