package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// auditKindValue is the shape of an audit event kind: "noun.verb".
var auditKindValue = regexp.MustCompile(`^[a-z_]+\.[a-z_]+$`)

// auditKindConst names the constants that hold audit kinds, wherever they
// live: KindX and kindX in the api packages, AuditX in activities.
var auditKindConst = regexp.MustCompile(`^(Kind|kind|Audit)[A-Z]`)

// TestAuditKindsMatchDocs keeps docs/AUDIT.md honest: it documents exactly the
// audit kinds the code writes, so every kind a user can filter
// GET /v1/activity?kind= by is explained, and nothing documented is dead.
func TestAuditKindsMatchDocs(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/AUDIT.md")
	require.NoError(t, err)
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(string(doc), -1) {
		if auditKindValue.MatchString(m[1]) {
			documented[m[1]] = true
		}
	}

	written := writtenAuditKinds(t, "../..")
	require.GreaterOrEqual(t, len(written), 30, "the scan found too few audit kinds to be looking in the right places")
	require.Contains(t, written, "permission.check")
	require.Contains(t, written, "approval.decided", "the approval projection's kinds were not found")

	for kind, where := range written {
		require.True(t, documented[kind], "%s is written (%s) but not documented in docs/AUDIT.md", kind, where)
	}
	for kind := range documented {
		_, ok := written[kind]
		require.True(t, ok, "docs/AUDIT.md documents %s but no code writes it", kind)
	}
}

// writtenAuditKinds scans the module's non-test Go sources (dev tools aside)
// and SQL for audit kinds: the values of constants named as audit kinds,
// the constant or literal value of every `Kind:` field holding a "noun.verb",
// and "noun.verb" literals inside SQL inserts into audit_events. It maps each
// kind to where it was found.
func writtenAuditKinds(t *testing.T, root string) map[string]string {
	t.Helper()
	type constKey struct{ pkg, name string }
	consts := map[constKey]ast.Expr{}
	type kindField struct {
		pkg   string
		value ast.Expr
		pos   string
	}
	var fields []kindField
	kinds := map[string]string{}
	insert := regexp.MustCompile(`(?is)INSERT\s+INTO\s+audit_events\b.*?;`)
	sqlKind := regexp.MustCompile(`'([a-z_]+\.[a-z_]+)'`)
	fset := token.NewFileSet()

	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel == "dev" || d.Name() == "testdata" || d.Name() == "node_modules" || (strings.HasPrefix(d.Name(), ".") && rel != ".") {
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case strings.HasSuffix(path, ".sql"):
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, stmt := range insert.FindAllString(string(src), -1) {
				for _, m := range sqlKind.FindAllStringSubmatch(stmt, -1) {
					kinds[m[1]] = rel
				}
			}
		case strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go"):
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			pkg := f.Name.Name
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.GenDecl:
					if n.Tok != token.CONST {
						return true
					}
					for _, spec := range n.Specs {
						vs := spec.(*ast.ValueSpec)
						for i, name := range vs.Names {
							if i < len(vs.Values) {
								consts[constKey{pkg, name.Name}] = vs.Values[i]
							}
						}
					}
				case *ast.KeyValueExpr:
					if k, ok := n.Key.(*ast.Ident); ok && k.Name == "Kind" {
						fields = append(fields, kindField{pkg, n.Value, fset.Position(n.Pos()).String()})
					}
				}
				return true
			})
		}
		return nil
	})
	require.NoError(t, err)

	// value resolves an expression to a string constant: a literal, or a
	// constant of this package or (by package name) of another.
	var value func(pkg string, e ast.Expr, depth int) (string, bool)
	value = func(pkg string, e ast.Expr, depth int) (string, bool) {
		if depth > 8 {
			return "", false
		}
		var key constKey
		switch e := e.(type) {
		case *ast.BasicLit:
			if e.Kind != token.STRING {
				return "", false
			}
			s, err := strconv.Unquote(e.Value)
			return s, err == nil
		case *ast.Ident:
			key = constKey{pkg, e.Name}
		case *ast.SelectorExpr:
			x, ok := e.X.(*ast.Ident)
			if !ok {
				return "", false
			}
			key = constKey{x.Name, e.Sel.Name}
		default:
			return "", false
		}
		v, ok := consts[key]
		if !ok {
			return "", false
		}
		return value(key.pkg, v, depth+1)
	}

	names := make([]constKey, 0, len(consts))
	for k := range consts {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b constKey) int { return strings.Compare(a.pkg+"."+a.name, b.pkg+"."+b.name) })
	for _, k := range names {
		if !auditKindConst.MatchString(k.name) {
			continue
		}
		if v, ok := value(k.pkg, consts[k], 0); ok && auditKindValue.MatchString(v) {
			kinds[v] = k.pkg + "." + k.name
		}
	}
	for _, f := range fields {
		if v, ok := value(f.pkg, f.value, 0); ok && auditKindValue.MatchString(v) {
			if _, seen := kinds[v]; !seen {
				kinds[v] = f.pos
			}
		}
	}
	return kinds
}
