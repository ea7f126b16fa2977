package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCompareHoldsResultsToTheBaseline(t *testing.T) {
	t.Parallel()
	base := map[string]string{"meta cimd WARNING": "not supported"}
	ok := []result{{Scenario: "meta", Check: "metadata", Status: "SUCCESS"}, {Scenario: "meta", Check: "cimd", Status: "WARNING"}}
	var sb strings.Builder
	require.NoError(t, compare(&sb, ok, base))
	require.Contains(t, sb.String(), "conformance: 1 passed, 0 failed\n")

	sb.Reset()
	newFailure := append(ok, result{Scenario: "grant", Check: "authorization-code-grant", Status: "FAILURE", Message: "Invalid iss"})
	require.Error(t, compare(&sb, newFailure, base))
	require.Contains(t, sb.String(), "NEW: grant authorization-code-grant FAILURE: Invalid iss")

	sb.Reset()
	require.Error(t, compare(&sb, ok[:1], base), "a baseline entry that no longer happens is stale")
	require.Contains(t, sb.String(), "STALE baseline entry")

	sb.Reset()
	skipped := append(ok, result{Scenario: "grant", Check: "authorization-code-grant", Status: "SKIPPED"})
	require.Error(t, compare(&sb, skipped, base), "a skipped check is not a pass")
}

func TestBaselineEntriesNeedAReason(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "baseline.txt")
	require.NoError(t, os.WriteFile(p, []byte("# comment\n\nmeta cimd WARNING not supported here\n"), 0o600))
	base, err := readBaseline(p)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"meta cimd WARNING": "not supported here"}, base)
	require.NoError(t, os.WriteFile(p, []byte("meta cimd WARNING\n"), 0o600))
	_, err = readBaseline(p)
	require.ErrorContains(t, err, "<reason>")
	require.NoError(t, os.WriteFile(p, []byte("meta cimd WARNING a\nmeta cimd WARNING b\n"), 0o600))
	_, err = readBaseline(p)
	require.ErrorContains(t, err, "twice")
}

func TestAScenarioWithoutResultsFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	d := filepath.Join(dir, "authorization-server-authorization-code-grant-2026-12-05T19-29-15-580Z")
	require.NoError(t, os.Mkdir(d, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(d, "checks.json"),
		[]byte(`[{"id":"authorization-code-grant","status":"FAILURE","errorMessage":"Invalid iss"}]`), 0o600))
	got, err := readResults(dir, []string{"authorization-code-grant"})
	require.NoError(t, err)
	require.Equal(t, []result{{Scenario: "authorization-code-grant", Check: "authorization-code-grant", Status: "FAILURE", Message: "Invalid iss"}}, got)
	_, err = readResults(dir, []string{"authorization-code-grant", "authorization-server-metadata-endpoint"})
	require.ErrorContains(t, err, "no results for scenario(s) authorization-server-metadata-endpoint")
}
