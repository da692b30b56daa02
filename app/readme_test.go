package app

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestREADMEConfigurationTable: the README's configuration table and the
// settings ParseConfig reads are one list: every setting has its row with
// its flag and, where it has a fixed default, that default; every row names
// a setting that exists.
func TestREADMEConfigurationTable(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	_, table, ok := strings.Cut(string(readme), "\n## Configuration\n")
	require.True(t, ok, "the README has a Configuration section")
	table, _, _ = strings.Cut(table, "\n#")
	code := regexp.MustCompile("`([^`]*)`")
	type row struct{ envs, flags, def string }
	rows := map[string]row{} // by env
	for line := range strings.SplitSeq(table, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 5 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		for _, m := range code.FindAllStringSubmatch(cells[1], -1) {
			rows[m[1]] = row{envs: cells[1], flags: cells[2], def: cells[3]}
		}
	}
	c := Config{QueryLimits: defaultQueryLimits}
	names := []string{"AUTH_SECRET"} // read from the environment only
	for _, s := range c.settings() {
		names = append(names, s.env)
		r, ok := rows[s.env]
		if !assert.True(t, ok, "the README lists %s", s.env) {
			continue
		}
		assert.Contains(t, r.flags, "`--"+s.flag+"`", "%s's flag", s.env)
		if s.def != "" {
			assert.Contains(t, r.def, "`"+s.def+"`", "%s's default", s.env)
		}
	}
	for env := range rows {
		assert.True(t, slices.Contains(names, env), "the README lists %s, which is no setting", env)
	}
}
