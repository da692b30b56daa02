package app

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestREADMEConfigurationTable: the README's configuration table and the
// settings ParseConfig reads are one list: every setting has its row with
// its flag and, where it has a fixed default, that default; every row names
// a setting that exists.
func TestREADMEConfigurationTable(t *testing.T) {
	table := readmeSection(t, "## Configuration")
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

// TestREADMEMetricsTable: the README's metrics table lists every
// switchboard_* metric the server registers, with its labels and its help
// text word for word, and nothing else.
func TestREADMEMetricsTable(t *testing.T) {
	table := readmeSection(t, "### Metrics and logs")
	row := regexp.MustCompile("(?m)^\\| `(switchboard_[a-z_]+)(?:\\{([a-z_, ]+)\\})?` \\| (.+) \\|$")
	type listed struct{ labels, help string }
	rows := map[string]listed{}
	for _, m := range row.FindAllStringSubmatch(table, -1) {
		rows[m[1]] = listed{labels: m[2], help: m[3]}
	}
	require.NotEmpty(t, rows)

	cfg, err := ParseConfig(nil, func(k string) string {
		return map[string]string{"ADDR": "127.0.0.1:0", "DATA_DIR": t.TempDir()}[k]
	}, io.Discard)
	require.NoError(t, err)
	s, err := Start(t.Context(), cfg, io.Discard)
	require.NoError(t, err)
	defer s.Shutdown(context.Background())
	desc := regexp.MustCompile(`fqName: ("(?:[^"\\]|\\.)*"), help: ("(?:[^"\\]|\\.)*"), .*variableLabels: \{([^}]*)\}`)
	registered := map[string]bool{}
	for _, c := range s.metrics.own {
		descs := make(chan *prometheus.Desc, 16)
		c.Describe(descs)
		close(descs)
		for d := range descs {
			m := desc.FindStringSubmatch(d.String())
			require.NotNil(t, m, d.String())
			name, _ := strconv.Unquote(m[1])
			help, _ := strconv.Unquote(m[2])
			registered[name] = true
			r, ok := rows[name]
			if assert.True(t, ok, "the README lists %s", name) {
				assert.Equal(t, help, r.help, "%s's help text", name)
				assert.Equal(t, strings.ReplaceAll(m[3], ",", ", "), r.labels, "%s's labels", name)
			}
		}
	}
	for name := range rows {
		assert.True(t, registered[name], "the README lists %s, which the server does not register", name)
	}
}

// readmeSection returns the README's section under heading (a line such as
// "## Configuration"), up to the next heading.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(readme), "\n"+heading+"\n")
	require.True(t, ok, "the README has a section %q", heading)
	section, _, _ = strings.Cut(section, "\n#")
	return section
}

// TestREADMEMapsTheRepository: the README's project structure names every
// folder of the repository (and every package) and nothing that is not
// there, and each file its "Where things are" table leads to exists and
// holds the function it names.
func TestREADMEMapsTheRepository(t *testing.T) {
	structure := readmeSection(t, "## Project structure")
	listed := map[string]bool{}
	for line := range strings.SplitSeq(structure, "\n") {
		name, _, _ := strings.Cut(line, " ")
		if name == "" || strings.HasPrefix(name, "`") || !(strings.Contains(name, ".") || strings.HasSuffix(name, "/") || strings.Contains(name, "/")) {
			continue
		}
		top, _, _ := strings.Cut(name, "/")
		listed[top] = true
		_, err := os.Stat("../" + name)
		assert.NoError(t, err, "the structure lists %s", name)
	}
	entries, err := os.ReadDir("..")
	require.NoError(t, err)
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") && e.Name() != "data" {
			assert.True(t, listed[e.Name()], "the structure lists the folder %s/", e.Name())
		}
	}

	table := readmeSection(t, "### Where things are")
	code := regexp.MustCompile("`([^`]+)`")
	rows := 0
	for line := range strings.SplitSeq(table, "\n") {
		_, where, ok := strings.Cut(line, " | ")
		if !ok || !strings.Contains(where, "`") {
			continue
		}
		rows++
		var files []string
		for _, m := range code.FindAllStringSubmatch(where, -1) {
			if strings.Contains(m[1], "/") {
				files = append(files, m[1])
				_, err := os.Stat("../" + m[1])
				assert.NoError(t, err, "the map leads to %s", m[1])
				continue
			}
			found := false
			for _, f := range files {
				b, _ := os.ReadFile("../" + f)
				found = found || regexp.MustCompile(`func (\([^)]*\) )?`+regexp.QuoteMeta(m[1])+`\b`).Match(b)
			}
			assert.True(t, found, "%v define %s", files, m[1])
		}
	}
	assert.Greater(t, rows, 10, "the map has its rows")
}

// TestReviewsNameRealTests: every test docs/security.md cites as the
// proof of a bound, and every test docs/faults.md cites as the proof of
// what a fault does, exists.
func TestReviewsNameRealTests(t *testing.T) {
	defined := map[string]bool{}
	decl := regexp.MustCompile(`(?m)^func ((?:Test|Fuzz)\w+)\(`)
	require.NoError(t, filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && path != ".." && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")):
			return filepath.SkipDir
		case !strings.HasSuffix(path, "_test.go"):
			return nil
		}
		src, err := os.ReadFile(path)
		for _, m := range decl.FindAllStringSubmatch(string(src), -1) {
			defined[m[1]] = true
		}
		return err
	}))
	for _, doc := range []string{"../docs/security.md", "../docs/faults.md"} {
		review, err := os.ReadFile(doc)
		require.NoError(t, err)
		cited := regexp.MustCompile("`((?:Test|Fuzz)\\w+)`").FindAllStringSubmatch(string(review), -1)
		require.NotEmpty(t, cited, doc)
		for _, m := range cited {
			assert.True(t, defined[m[1]], "%s cites %s, which no test defines", doc, m[1])
		}
	}
}
