package pii

import (
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestTruncate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		n    int
		want string
	}{
		{"shorter than limit", "hello", 10, "hello"},
		{"exactly the limit", "hello", 5, "hello"},
		{"one over", "hello!", 5, "hell…"},
		{"limit one", "hello", 1, "…"},
		{"zero", "hello", 0, ""},
		{"negative", "hello", -3, ""},
		{"empty", "", 5, ""},
		{"multibyte kept whole", "héllo wörld", 4, "hél…"},
		{"emoji kept whole", "🙂🙂🙂🙂", 3, "🙂🙂…"},
		{"space before ellipsis dropped", "delete the database", 8, "delete…"},
		{"cjk", "删除生产数据库中的所有记录", 6, "删除生产数…"},
		{"invalid byte counts as one rune", "ab\xffcd", 4, "ab\xff…"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := Truncate(tc.in, tc.n)
			require.Equal(t, tc.want, got)
			if tc.n > 0 {
				require.LessOrEqual(t, utf8.RuneCountInString(got), tc.n)
			}
		})
	}
}
