package main

import (
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"oakallow/api/billing"
	"oakallow/dev/devstack"
)

// TestParseFlags pins what `go run ./dev` starts: the documented ports and
// directory by default, the flags and environment variables that change
// them, and usage errors.
func TestParseFlags(t *testing.T) {
	t.Parallel()
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	prepaid := billing.Config{Mode: billing.ModePrepaid, LowBalanceMicros: billing.DefaultLowBalanceMicros}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    devstack.Options
		wantErr string
	}{
		{
			name: "defaults are the README's ports and .oakallow/dev",
			want: devstack.Options{Dir: ".oakallow/dev", Port: 8080, TemporalPort: 7233, UIPort: 8233, Billing: prepaid},
		},
		{
			name: "flags",
			args: []string{"-fresh", "-port", "9090", "-dir", "/tmp/x", "-temporal-port", "17233", "-ui-port", "18233"},
			want: devstack.Options{Fresh: true, Dir: "/tmp/x", Port: 9090, TemporalPort: 17233, UIPort: 18233, Billing: prepaid},
		},
		{
			name: "environment selects an existing database and the PostgreSQL binaries",
			env:  map[string]string{"DATABASE_URL": "postgres://u@h/db", "OAKALLOW_PG_BIN": "/opt/pg/bin"},
			want: devstack.Options{Dir: ".oakallow/dev", Port: 8080, TemporalPort: 7233, UIPort: 8233,
				DatabaseURL: "postgres://u@h/db", PostgresBin: "/opt/pg/bin", Billing: prepaid},
		},
		{
			name: "billing mode off",
			env:  map[string]string{"OAKALLOW_BILLING_MODE": "off"},
			want: devstack.Options{Dir: ".oakallow/dev", Port: 8080, TemporalPort: 7233, UIPort: 8233,
				Billing: billing.Config{Mode: billing.ModeOff, LowBalanceMicros: billing.DefaultLowBalanceMicros}},
		},
		{name: "unknown billing mode", env: map[string]string{"OAKALLOW_BILLING_MODE": "free"}, wantErr: "not stripe, prepaid or off"},
		{name: "unknown flag", args: []string{"-nope"}, wantErr: "flag provided but not defined"},
		{name: "stray argument", args: []string{"serve"}, wantErr: "unexpected arguments"},
		{name: "port out of range", args: []string{"-port", "70000"}, wantErr: "out of range"},
		{name: "empty dir", args: []string{"-dir", ""}, wantErr: "Dir is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseFlags(tc.args, env(tc.env), io.Discard)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}
