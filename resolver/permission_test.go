package resolver

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPermissionNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		perm Permission
	}{
		{name: "", perm: PermissionUnset},
		{name: "allowed", perm: Allowed},
		{name: "requires_approval", perm: RequiresApproval},
		{name: "disabled", perm: Disabled},
	}
	for _, tt := range tests {
		t.Run(tt.perm.String()+"|"+tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.name, tt.perm.String())
			got, err := ParsePermission(tt.name)
			require.NoError(t, err)
			require.Equal(t, tt.perm, got)

			raw, err := json.Marshal(tt.perm)
			require.NoError(t, err)
			require.JSONEq(t, `"`+tt.name+`"`, string(raw))
			var back Permission
			require.NoError(t, json.Unmarshal(raw, &back))
			require.Equal(t, tt.perm, back)
		})
	}
}

func TestParsePermissionRefuses(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"Allowed", "allow", "deny", " allowed", "requires-approval", "null"} {
		t.Run(s, func(t *testing.T) {
			t.Parallel()
			_, err := ParsePermission(s)
			require.ErrorContains(t, err, "unknown permission")
		})
	}
}

func TestPermissionOutOfRange(t *testing.T) {
	t.Parallel()
	p := Disabled + 1
	require.Equal(t, "Permission(4)", p.String())
	_, err := json.Marshal(p)
	require.ErrorContains(t, err, "invalid value 4")
}

func TestScopeNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		scope Scope
	}{
		{name: "gate", scope: ScopeGate},
		{name: "tenant", scope: ScopeTenant},
		{name: "org", scope: ScopeOrg},
		{name: "fallback", scope: ScopeFallback},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.name, tt.scope.String())
			raw, err := tt.scope.MarshalText()
			require.NoError(t, err)
			var back Scope
			require.NoError(t, back.UnmarshalText(raw))
			require.Equal(t, tt.scope, back)
		})
	}

	var s Scope
	require.ErrorContains(t, s.UnmarshalText([]byte("")), "unknown scope")
	require.ErrorContains(t, s.UnmarshalText([]byte("global")), "unknown scope")
	_, err := (ScopeFallback + 1).MarshalText()
	require.Error(t, err)
}
