package resolver

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// caseFile is one testdata/*.yaml file: a policy and the checks run against
// it. The same cases drive TestDecide and BenchmarkDecide.
type caseFile struct {
	Description string      `yaml:"description"`
	Policy      casePolicy  `yaml:"policy"`
	Checks      []caseCheck `yaml:"checks"`

	name  string
	index *Index
}

type casePolicy struct {
	Categories []struct {
		Name              string     `yaml:"name"`
		DefaultPermission Permission `yaml:"default_permission"`
	} `yaml:"categories"`
	Tools []struct {
		Name              string     `yaml:"name"`
		Category          string     `yaml:"category"`
		DefaultPermission Permission `yaml:"default_permission"`
		Approved          bool       `yaml:"approved"`
		Enabled           *bool      `yaml:"enabled"` // absent means enabled, to keep cases short
		Draft             bool       `yaml:"draft"`
	} `yaml:"tools"`
	Rules []struct {
		ID         string     `yaml:"id"`
		Tenant     string     `yaml:"tenant"`
		Resource   string     `yaml:"resource"`
		Tool       string     `yaml:"tool"`
		Method     string     `yaml:"method"`
		Permission Permission `yaml:"permission"`
	} `yaml:"rules"`
}

type caseCheck struct {
	Name  string `yaml:"name"`
	Input struct {
		Tool     string `yaml:"tool"`
		Tenant   string `yaml:"tenant"`
		Resource string `yaml:"resource"`
		Method   string `yaml:"method"`
	} `yaml:"input"`
	Want struct {
		Permission Permission `yaml:"permission"`
		Level      int        `yaml:"level"`
		LevelName  string     `yaml:"level_name"`
		Scope      string     `yaml:"scope"` // a string so that a missing scope is caught, not read as "gate"
		RuleID     string     `yaml:"rule_id"`
		Reason     string     `yaml:"reason"`
	} `yaml:"want"`
}

func (c caseCheck) input() Input {
	return Input{Tool: c.Input.Tool, Tenant: c.Input.Tenant, Resource: c.Input.Resource, Method: c.Input.Method}
}

func (c caseCheck) want(tb testing.TB) Decision {
	tb.Helper()
	require.NotEqual(tb, PermissionUnset, c.Want.Permission, "check %q: want.permission is required", c.Name)
	require.NotEmpty(tb, c.Want.LevelName, "check %q: want.level_name is required", c.Name)
	var scope Scope
	require.NoError(tb, scope.UnmarshalText([]byte(c.Want.Scope)), "check %q: want.scope", c.Name)
	return Decision{
		Permission: c.Want.Permission,
		Level:      c.Want.Level,
		LevelName:  c.Want.LevelName,
		Scope:      scope,
		RuleID:     c.Want.RuleID,
		Reason:     c.Want.Reason,
	}
}

func (p casePolicy) policy() Policy {
	var out Policy
	for _, c := range p.Categories {
		out.Categories = append(out.Categories, Category{Name: c.Name, DefaultPermission: c.DefaultPermission})
	}
	for _, t := range p.Tools {
		out.Tools = append(out.Tools, Tool{
			Name:              t.Name,
			Category:          t.Category,
			DefaultPermission: t.DefaultPermission,
			Approved:          t.Approved,
			Enabled:           t.Enabled == nil || *t.Enabled,
			Draft:             t.Draft,
		})
	}
	for _, r := range p.Rules {
		out.Rules = append(out.Rules, Rule{
			ID: r.ID, Tenant: r.Tenant, Resource: r.Resource, Tool: r.Tool, Method: r.Method, Permission: r.Permission,
		})
	}
	return out
}

// loadCases reads and compiles every testdata/*.yaml file. Unknown YAML
// fields are errors, so a misspelt key cannot silently weaken a case.
func loadCases(tb testing.TB) []caseFile {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	require.NoError(tb, err)
	require.NotEmpty(tb, paths)

	files := make([]caseFile, 0, len(paths))
	for _, path := range paths {
		raw, err := os.ReadFile(path)
		require.NoError(tb, err)
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		var f caseFile
		require.NoError(tb, dec.Decode(&f), path)
		require.NotEmpty(tb, f.Checks, "%s has no checks", path)

		f.name = strings.TrimSuffix(filepath.Base(path), ".yaml")
		f.index, err = Compile(f.Policy.policy())
		require.NoError(tb, err, path)
		files = append(files, f)
	}
	return files
}
