package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestConfigurationTableMatchesCode keeps docs/CONFIGURATION.md honest: the
// table lists exactly the variables in envVars, with the same defaults.
func TestConfigurationTableMatchesCode(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/CONFIGURATION.md")
	require.NoError(t, err)
	row := regexp.MustCompile("(?m)^\\| `([A-Z0-9_]+)` \\| (.*?) \\|")
	documented := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		def := strings.TrimSpace(m[2])
		if def == "(none)" {
			def = ""
		}
		documented[m[1]] = strings.Trim(def, "`")
	}
	inCode := map[string]string{}
	for _, v := range envVars {
		inCode[v.Name] = v.Default
	}
	require.Equal(t, inCode, documented, "docs/CONFIGURATION.md and envVars disagree")
}

// TestEveryReadVariableIsRegistered scans the command's sources: every
// getenv("X") names a registered variable, and nothing calls os.Getenv.
func TestEveryReadVariableIsRegistered(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	registered := map[string]bool{}
	for _, v := range envVars {
		registered[v.Name] = true
	}
	call := regexp.MustCompile(`(?:getenv|getenvInt|getenvDuration|required)\("([A-Z0-9_]+)"\)`)
	seen := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		require.NotContains(t, string(src), "os.Getenv(", "%s reads the environment outside getenv", f)
		for _, m := range call.FindAllStringSubmatch(string(src), -1) {
			require.True(t, registered[m[1]], "%s reads unregistered %s", f, m[1])
			seen[m[1]] = true
		}
	}
	for name := range registered {
		require.True(t, seen[name], "%s is documented but never read", name)
	}
}

func TestUnknownCommandIsAUsageError(t *testing.T) {
	t.Parallel()
	var sb strings.Builder
	err := run(t.Context(), []string{"frobnicate"}, &sb)
	require.ErrorAs(t, err, new(usageError))
	require.ErrorAs(t, run(t.Context(), nil, &sb), new(usageError))
	require.ErrorAs(t, run(t.Context(), []string{"migrate", "sideways"}, &sb), new(usageError))
	require.NoError(t, run(t.Context(), []string{"version"}, &sb))
	require.Contains(t, sb.String(), "oakallow")
}
