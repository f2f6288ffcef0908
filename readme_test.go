// readme_test.go keeps the README honest: it replays the curl walk-through of section 5,
// command by command and terminal by terminal, against a fresh server started with the
// walk-through's own flags, and compares every output with the README's. It also checks
// that the JSON in the sequence diagram has the shapes the server really sends. A code
// change that alters an answer fails here until the README moves with it.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// walkBlock is one ```console block of the walk-through and the terminal it is typed in.
type walkBlock struct {
	terminal string
	lines    []string
}

// walkthrough returns the console blocks of the README's "Try it with curl" section.
func walkthrough(t *testing.T) []walkBlock {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	text := string(readme)
	start := strings.Index(text, "### Try it with curl")
	require.NotEqual(t, -1, start, "README has no curl walk-through")
	text = text[start:]
	if end := strings.Index(text[1:], "\n## "); end >= 0 {
		text = text[:end+1]
	}
	label := regexp.MustCompile(`\*\*Terminal (\d)`)
	var blocks []walkBlock
	terminal := ""
	var in *walkBlock
	for line := range strings.SplitSeq(text, "\n") {
		switch {
		case in == nil && line == "```console":
			require.NotEmpty(t, terminal, "a console block before any **Terminal N** label")
			in = &walkBlock{terminal: terminal}
		case in != nil && line == "```":
			blocks = append(blocks, *in)
			in = nil
		case in != nil:
			in.lines = append(in.lines, line)
		default:
			if m := label.FindAllStringSubmatch(line, -1); m != nil {
				terminal = m[len(m)-1][1]
			}
		}
	}
	require.Nil(t, in, "an unclosed console block")
	require.NotEmpty(t, blocks)
	return blocks
}

// step is a command and the output the README shows for it.
type step struct {
	command string
	want    []string
}

// steps splits a block into the output it opens with (the answer to a command left
// running in an earlier block of the same terminal) and its commands with their outputs.
func steps(lines []string) (leading []string, out []step) {
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if !strings.HasPrefix(line, "$ ") {
			if len(out) == 0 {
				leading = append(leading, line)
			} else {
				out[len(out)-1].want = append(out[len(out)-1].want, line)
			}
			continue
		}
		cmd := strings.TrimPrefix(line, "$ ")
		for strings.HasSuffix(cmd, `\`) && i+1 < len(lines) { // a command continued on the next line
			i++
			cmd = strings.TrimSuffix(cmd, `\`) + strings.TrimSpace(lines[i])
		}
		out = append(out, step{command: cmd})
	}
	return leading, out
}

// normalise makes outputs comparable: ids and dates vary, curl -i ends lines in CRLF,
// and a block may end in blank lines.
func normalise(lines []string) string {
	s := strings.ReplaceAll(strings.Join(lines, "\n"), "\r", "")
	s = regexp.MustCompile(`[0-9a-f]{32}`).ReplaceAllString(s, "<id>")
	s = regexp.MustCompile(`(?m)^Date: .*$`).ReplaceAllString(s, "Date: <date>")
	return strings.TrimRight(s, "\n ")
}

// running is a command left running at the end of a block: a parked poll.
type running struct {
	command string
	out     bytes.Buffer
	done    chan error
}

func TestReadmeWalkthroughMatchesTheServer(t *testing.T) {
	for _, tool := range []string{"bash", "curl"} {
		_, err := exec.LookPath(tool)
		require.NoError(t, err, "the README's walk-through needs %s (apt-get install -y %s)", tool, tool)
	}
	blocks := walkthrough(t)

	// The first block starts the server; start it here with the same flags, on a free port.
	require.Equal(t, "1", blocks[0].terminal)
	_, serverSteps := steps(blocks[0].lines)
	require.Len(t, serverSteps, 1)
	args, ok := strings.CutPrefix(serverSteps[0].command, "go run .")
	require.True(t, ok, "terminal 1 starts the server with go run .")
	ctx, cancel := context.WithCancel(context.Background())
	logs, logw := io.Pipe()
	ran := make(chan error, 1)
	go func() {
		ran <- run(ctx, append(strings.Fields(args), "-addr", "127.0.0.1:0"), logw)
		logw.Close()
	}()
	defer func() { cancel(); require.NoError(t, <-ran) }()
	line, err := bufio.NewReader(logs).ReadString('\n')
	require.NoError(t, err)
	go io.Copy(io.Discard, logs)
	addr := regexp.MustCompile(`url=http://(\S+)/`).FindStringSubmatch(line)
	require.NotNil(t, addr, line)

	vars := map[string]string{} // ANN, BOB: what the reader's shell remembers
	shell := func(command string) *exec.Cmd {
		cmd := exec.Command("bash", "-c", strings.ReplaceAll(command, "localhost:8080", addr[1]))
		cmd.Env = os.Environ()
		for k, v := range vars {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		return cmd
	}
	const patience = 5 * time.Second // a parked poll is answered within a presence tick
	finish := func(r *running) string {
		t.Helper()
		select {
		case err := <-r.done:
			require.NoError(t, err, r.command)
		case <-time.After(patience):
			require.FailNow(t, "still running", "%s", r.command)
		}
		return r.out.String()
	}
	assign := regexp.MustCompile(`^([A-Z]+)=\$\((.*)\)$`)
	left := map[string]*running{} // per terminal, the command still running

	for _, b := range blocks[1:] {
		leading, todo := steps(b.lines)
		if r := left[b.terminal]; r != nil {
			require.Equal(t, normalise(leading), normalise([]string{finish(r)}), "terminal %s: the answer to %q", b.terminal, r.command)
			delete(left, b.terminal)
		} else {
			require.Empty(t, normalise(leading), "terminal %s: output with no command before it", b.terminal)
		}
		for i, s := range todo {
			if m := assign.FindStringSubmatch(s.command); m != nil {
				out, err := shell(m[2]).Output()
				require.NoError(t, err, s.command)
				vars[m[1]] = strings.TrimSpace(string(out))
				require.Regexp(t, `^[0-9a-f]{32}$`, vars[m[1]], s.command)
				require.Empty(t, normalise(s.want), "an assignment prints nothing")
				continue
			}
			r := &running{command: s.command, done: make(chan error, 1)}
			cmd := shell(s.command)
			cmd.Stdout = &r.out
			require.NoError(t, cmd.Start())
			go func() { r.done <- cmd.Wait() }()
			if i == len(todo)-1 && len(s.want) == 0 {
				left[b.terminal] = r // the README shows its answer in a later block
				continue
			}
			require.Equal(t, normalise(s.want), normalise([]string{finish(r)}), "terminal %s: %s", b.terminal, s.command)
		}
	}
	for term, r := range left {
		require.Empty(t, normalise([]string{finish(r)}), "terminal %s: %q printed what the README does not show", term, r.command)
	}
}

// TestReadmeDiagramShowsRealShapes checks the JSON in the sequence diagram: each body
// is valid, a /connect answer has the fields the server sends, and every poll answer
// is {"messages":[...]} of {"seq","event","data"}.
func TestReadmeDiagramShowsRealShapes(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	text := string(readme)
	at := strings.Index(text, "```mermaid")
	require.NotEqual(t, -1, at)
	diagram := text[at : at+3+strings.Index(text[at+3:], "```")]

	ts := start(t, testConfig())
	r, err := ts.request(context.Background(), "POST", "/connect", "", "")
	require.NoError(t, err)
	connectKeys := keysOf(t, r.body)

	polls := 0
	for line := range strings.SplitSeq(diagram, "\n") {
		open, end := strings.Index(line, "{"), strings.LastIndex(line, "}")
		if open < 0 || !strings.Contains(line, "S-->>") {
			continue
		}
		body := []byte(line[open : end+1])
		require.True(t, json.Valid(body), "not JSON: %s", body)
		switch keys := keysOf(t, body); {
		case slices.Contains(keys, "id"):
			require.Equal(t, connectKeys, keys, "the /connect answer: %s", body)
		default:
			require.Equal(t, []string{"messages"}, keys, "a poll answer: %s", body)
			var answer struct{ Messages []json.RawMessage }
			require.NoError(t, json.Unmarshal(body, &answer))
			for _, m := range answer.Messages {
				require.Equal(t, []string{"data", "event", "seq"}, keysOf(t, m), "a message: %s", m)
			}
			polls++
		}
	}
	require.Positive(t, polls, "the diagram shows poll answers")
}

// keysOf lists a JSON object's keys, sorted.
func keysOf(t *testing.T, body []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(body, &m), "%s", body)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
