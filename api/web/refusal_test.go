package web

import (
	"testing"

	"github.com/stretchr/testify/require"
)

type fieldError = struct {
	Location string `json:"location"`
	Message  string `json:"message"`
}

func TestRefusalText(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		p    problem
		want string
	}{
		{"detail alone", problem{Status: 409, Detail: `a tool named "x" already exists in this org`},
			`a tool named "x" already exists in this org`},
		{"no detail", problem{Status: 422}, "Unprocessable Entity"},
		// The API's field problems repeat their detail as the field's message:
		// said once, not "no tenant "acme" in this org: no tenant "acme" in this org".
		{"field message repeats the detail", problem{Status: 422, Detail: `no tenant "acme" in this org`,
			Errors: []fieldError{{Location: "body.tenant", Message: `no tenant "acme" in this org`}}},
			`no tenant "acme" in this org`},
		{"field named in its message", problem{Status: 422, Detail: "validation failed",
			Errors: []fieldError{{Location: "body.name", Message: "expected name to be at most 200 characters"}}},
			"validation failed: expected name to be at most 200 characters"},
		{"field not named", problem{Status: 422, Detail: "validation failed",
			Errors: []fieldError{{Location: "body.name", Message: "expected length <= 200"}, {Location: "query.limit", Message: "too big"}}},
			"validation failed: name expected length <= 200; limit too big"},
		{"repeat skipped, others kept", problem{Status: 422, Detail: "bad tenant",
			Errors: []fieldError{{Location: "body.tenant", Message: "bad tenant"}, {Location: "body.tool", Message: "unknown"}}},
			"bad tenant: tool unknown"},
		{"at most three", problem{Status: 422, Detail: "validation failed",
			Errors: []fieldError{{Message: "a"}, {Message: "b"}, {Message: "c"}, {Message: "d"}}},
			"validation failed: a; b; c"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, c.want, refusalText(&c.p))
		})
	}
}
