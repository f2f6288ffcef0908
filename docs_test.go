// docs_test.go keeps the README and docs/ true to the code in what a replay cannot see:
// every code quote in the guarantees table occurs in the source, every flag the program
// defines is explained, and every relative link names a file (and heading) that exists.

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// source is every root .go file and every static/*.js file, joined: where the guarantees
// table's quotes must be found.
func source(t *testing.T) string {
	t.Helper()
	goFiles, err := filepath.Glob("*.go")
	require.NoError(t, err)
	jsFiles, err := filepath.Glob("static/*.js")
	require.NoError(t, err)
	var all strings.Builder
	for _, f := range append(goFiles, jsFiles...) {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		all.Write(b)
		all.WriteString("\n")
	}
	return all.String()
}

// quoteFound says whether a quote from the guarantees table occurs in src. A quote is
// code, found as written, with three readings where it is not: pieces around "…" must
// occur in order on one line; `type.method` of a type of ours names a method, found by
// its declaration; a dotted name from outside (`http.Server.Shutdown`,
// `navigator.sendBeacon`) must be called by its last part; and a header as sent
// (`Retry-After: 2`) needs its name and its value quoted in the source.
func quoteFound(src, quote string) bool {
	if strings.Contains(src, quote) {
		return true
	}
	if strings.Contains(quote, "…") {
		pieces := strings.Split(quote, "…")
		for i, p := range pieces {
			pieces[i] = regexp.QuoteMeta(strings.TrimSpace(p))
		}
		return regexp.MustCompile(strings.Join(pieces, ".*?")).MatchString(src)
	}
	if m := regexp.MustCompile(`^([A-Z][A-Za-z-]+): (\S+)$`).FindStringSubmatch(quote); m != nil {
		return strings.Contains(src, `"`+m[1]+`"`) && strings.Contains(src, `"`+m[2]+`"`)
	}
	parts := strings.Split(quote, ".")
	if len(parts) < 2 || !regexp.MustCompile(`^\w+(\.\w+)+$`).MatchString(quote) {
		return false
	}
	first, last := parts[0], parts[len(parts)-1]
	if regexp.MustCompile(`(?m)^type ` + first + ` `).MatchString(src) {
		return len(parts) == 2 && regexp.MustCompile(`func \(\w+ \*?`+first+`\) `+last+`\(`).MatchString(src)
	}
	return regexp.MustCompile(`\b` + last + `(\?\.)?\(`).MatchString(src)
}

func TestGuaranteesQuoteTheSource(t *testing.T) {
	table := section(t, "README.md", "## 4. The guarantees, and the line that makes each hold")
	src := source(t)
	quote := regexp.MustCompile("`([^`]+)`")
	var quotes, missing []string
	for line := range strings.SplitSeq(table, "\n") {
		if !strings.HasPrefix(line, "| ") {
			continue
		}
		for _, m := range quote.FindAllStringSubmatch(line, -1) {
			quotes = append(quotes, m[1])
			if !quoteFound(src, m[1]) {
				missing = append(missing, "`"+m[1]+"`")
			}
		}
	}
	require.NotEmpty(t, quotes, "README section 4 has a table of guarantees with code quotes")
	require.Empty(t, missing, "README section 4 quotes code that no root .go file or static/*.js file holds")
}

// TestQuoteFoundCanFail checks the matcher on quotes that must not be found, so that the
// test above cannot pass for a matcher that finds everything.
func TestQuoteFoundCanFail(t *testing.T) {
	src := "type state struct{}\ntype hub struct{}\nfunc (s *state) poll(req pollRequest) {\n\tif c.parked == nil && now.Sub(c.lastSeen) > ttl {\n" +
		"\tw.Header().Set(\"Retry-After\", retryAfter)\n\tsrv.Shutdown(ctx)\n}\nconst retryAfter = \"2\"\n"
	tests := []struct {
		give string
		want bool
	}{
		{"c.parked == nil", true},
		{"c.parked == nil && now.Sub(c.lastSeen) > …", true},
		{"state.poll", true},
		{"c.parked != nil", false},
		{"c.parked == nil && … > never", false},
		{"state.emit", false},
		{"hub.poll", false},
		{"state.emit", false},
		{"state.Shutdown", false},
		{"http.Server.Shutdown", true},
		{"http.Server.Close", false},
		{"Retry-After: 2", true},
		{"Retry-After: 3", false},
		{"encode(body.Event, body.Data)", false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, quoteFound(src, tt.give), tt.give)
	}
}

// TestEveryFlagIsExplained reads the flags from the program's own usage text and checks
// that README section 6 has a row for each.
func TestEveryFlagIsExplained(t *testing.T) {
	var usage bytes.Buffer
	require.Error(t, run(context.Background(), []string{"-h"}, &usage))
	flags := regexp.MustCompile(`(?m)^  (-[a-z-]+)`).FindAllStringSubmatch(usage.String(), -1)
	require.NotEmpty(t, flags, usage.String())
	table := section(t, "README.md", "## 6. Flags and limits")
	for _, f := range flags {
		require.Contains(t, table, "| `"+f[1]+"` |", "README section 6 does not explain %s", f[1])
	}
}

// TestLinksResolve checks every relative link in the README and docs/: the file exists,
// and a #fragment into a markdown file names one of its headings.
func TestLinksResolve(t *testing.T) {
	files, err := filepath.Glob("docs/*.md")
	require.NoError(t, err)
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	links := 0
	for _, file := range append(files, "README.md") {
		raw, err := os.ReadFile(file)
		require.NoError(t, err)
		for _, m := range link.FindAllStringSubmatch(string(raw), -1) {
			target, fragment, _ := strings.Cut(m[1], "#")
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			links++
			path := file
			if target != "" {
				path = filepath.Join(filepath.Dir(file), target)
				_, err := os.Stat(path)
				require.NoError(t, err, "%s links to %s, which does not exist", file, m[1])
			}
			if fragment != "" && strings.HasSuffix(path, ".md") {
				require.Contains(t, anchors(t, path), fragment, "%s links to %s, which has no such heading", file, m[1])
			}
		}
	}
	require.Positive(t, links)
}

// anchors lists the fragment ids GitHub gives the headings of a markdown file: lower
// case, punctuation dropped, spaces as hyphens.
func anchors(t *testing.T, file string) []string {
	t.Helper()
	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	var ids []string
	inCode := false
	for line := range strings.SplitSeq(string(raw), "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		title, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " ")
		if inCode || !ok || !strings.HasPrefix(line, "#") {
			continue
		}
		id := strings.Map(func(r rune) rune {
			switch {
			case r == ' ':
				return '-'
			case r == '-' || r == '_' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9':
				return r
			}
			return -1
		}, strings.ToLower(title))
		ids = append(ids, id)
	}
	return slices.Compact(ids)
}
