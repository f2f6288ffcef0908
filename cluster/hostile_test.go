// hostile_test.go holds the checks the cluster shares with the single server against
// hostile clients: the same files (copied from the root, which this module cannot
// import), and the same refusals over real HTTP through nginx.

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCopiesOfTheRootAreIdentical: the rules against hostile clients are one rule,
// kept in the root and copied here byte for byte, so that the two cannot drift.
func TestCopiesOfTheRootAreIdentical(t *testing.T) {
	for _, name := range []string{"bounds.go"} {
		t.Run(name, func(t *testing.T) {
			root, err := os.ReadFile("../" + name)
			require.NoError(t, err)
			copied, err := os.ReadFile(name)
			require.NoError(t, err)
			require.True(t, string(root) == string(copied),
				"cluster/%s differs from the root's %s, which owns the rule: copy it again (cp %s cluster/)", name, name, name)
		})
	}
}

// TestHostileDataIsRefused: data some reader could not read back gets the single
// server's 400 and its text, is never stored, and a well-behaved client polling all
// the while still receives the next chat, as the next seq.
func TestHostileDataIsRefused(t *testing.T) {
	_, base := startCluster(t)
	mallory, alice, bob := connect(t, base), connect(t, base), connect(t, base)
	after := poll(t, base, alice, 0)[0].Seq
	tests := []struct{ name, data, want string }{
		{"nested 33 levels", strings.Repeat("[", 33) + strings.Repeat("]", 33), "data is nested deeper than 32 levels (-max-depth)"},
		{"nested 10,000 levels", strings.Repeat("[", 10000) + strings.Repeat("]", 10000), "data is nested deeper than 32 levels (-max-depth)"},
		{"invalid UTF-8", "\"a\xffb\"", "data is not valid UTF-8"},
		{"a number beyond float64", "1e400", "data holds the number 1e400, beyond what a float64 holds"},
		{"a lone surrogate escape", `"\ud800"`, `data holds a lone high surrogate escape (\ud800-\udbff)`},
		{"a lone low surrogate escape", `["x\udc00"]`, `data holds a lone low surrogate escape (\udc00-\udfff)`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(t, "POST", base+"/emit?id="+mallory, `{"event":"chat","data":`+tt.data+`}`)
			require.Equal(t, 400, a.status, a.body)
			require.Equal(t, "application/json", a.header.Get("Content-Type"))
			var v struct{ Error string }
			require.NoError(t, json.Unmarshal([]byte(a.body), &v), a.body)
			require.Equal(t, tt.want, v.Error)

			emit(t, base, bob, fmt.Sprint(i))
			require.JSONEq(t, fmt.Sprint(i), string(nextChat(t, base, alice, &after).Data), "the refused message was stored")
		})
	}
}

// TestMaxDepthFlag: -max-depth moves the bound, within the single server's range.
func TestMaxDepthFlag(t *testing.T) {
	for _, tt := range []struct {
		value string
		ok    bool
	}{{"1", true}, {"32", true}, {"500", true}, {"0", false}, {"501", false}} {
		_, _, err := parse([]string{"-max-depth", tt.value}, os.Stderr)
		if tt.ok {
			require.NoError(t, err, tt.value)
		} else {
			require.ErrorContains(t, err, "-max-depth must be 1 to 500", tt.value)
		}
	}
}

// nextChat polls until a chat arrives after *after (online counts may come between)
// and moves *after past it.
func nextChat(t *testing.T, base, id string, after *uint64) message {
	t.Helper()
	for range 10 {
		for _, m := range poll(t, base, id, *after) {
			*after = m.Seq
			if m.Event == "chat" {
				return m
			}
		}
	}
	require.Fail(t, "no chat in 10 polls")
	return message{}
}
