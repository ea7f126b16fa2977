package devenv

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	tlog "go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
)

// countedTag counts how often its value is computed.
type countedTag struct {
	key, value string
	calls      *int
}

func (t countedTag) Key() string { return t.key }
func (t countedTag) Value() any  { *t.calls++; return t.value }

// TestTemporalLoggerWithIsLazy: With computes no tag value; a record filtered out by the
// level computes none either; a record that passes carries the tags of every With in order,
// then its own, and two loggers derived from one parent do not see each other's tags.
func TestTemporalLoggerWithIsLazy(t *testing.T) {
	var out bytes.Buffer
	base := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	level := new(slog.LevelVar)
	level.Set(slog.LevelWarn)
	calls := 0
	tg := func(k, v string) tag.Tag { return countedTag{key: k, value: v, calls: &calls} }

	parent := tlog.With(newTemporalLogger(base, level), tg("shard", "1"))
	a := tlog.With(parent, tg("task", "a"))
	b := tlog.With(parent, tg("task", "b"), tg("attempt", "2"))
	a.Info("filtered", tg("x", "y"))
	require.Zero(t, calls, "tag values computed for With or for a filtered record")
	require.Empty(t, out.String())

	a.Warn("first", tg("err", "boom"))
	b.Error("second")
	require.Equal(t, 3+3, calls, "only the two records' tags")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Equal(t, []string{
		`level=WARN msg=first component=temporal shard=1 task=a err=boom`,
		`level=ERROR msg=second component=temporal shard=1 task=b attempt=2`,
	}, lines)

	out.Reset()
	b.(interface{ SLog() *slog.Logger }).SLog().Warn("through slog", "k", "v")
	require.Equal(t, "level=WARN msg=\"through slog\" component=temporal shard=1 task=b attempt=2 k=v\n", out.String())
}
