// readme_test.go keeps the transcripts honest: it replays every curl session of the README
// and docs/, command by command and terminal by terminal, against a fresh server started
// with the transcript's own flags, and compares every output with the page's. It also
// checks that the JSON in the sequence diagram has the shapes the server really sends. A
// code change that alters an answer fails here until the page moves with it.

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// transcripts are the sections that hold a console session, by file and heading. Each
// starts a server of its own in terminal 1.
var transcripts = []struct{ file, heading string }{
	{"README.md", "### Try it with curl, in three terminals"},
	{"docs/socketio.md", "## Try it with curl"},
	{"docs/socketio.md", "## The heartbeat, by hand"},
}

// walkBlock is one ```console block of a transcript and the terminal it is typed in.
type walkBlock struct {
	terminal string
	lines    []string
}

// section returns the text under heading in file, up to the next heading of the same
// level or above.
func section(t *testing.T, file, heading string) string {
	t.Helper()
	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	text := string(raw)
	start := strings.Index(text, "\n"+heading+"\n")
	require.NotEqual(t, -1, start, "%s has no section %q", file, heading)
	text = text[start+1+len(heading):]
	level := strings.Repeat("#", strings.Index(heading, " "))
	for at := 0; ; {
		next := strings.Index(text[at:], "\n#")
		if next < 0 {
			return text
		}
		at += next + 1
		if hashes := strings.TrimLeft(text[at:], "#"); len(text[at:])-len(hashes) <= len(level) && strings.HasPrefix(hashes, " ") {
			return text[:at]
		}
	}
}

// consoleBlocks returns the console blocks of text, each with the terminal its nearest
// **Terminal N** label before it names.
func consoleBlocks(t *testing.T, text string) []walkBlock {
	t.Helper()
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

// step is a command and the output the page shows for it.
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

// tester is what a replay needs of a test: a *testing.T, or a recorder that lets a test
// check that a drifted transcript fails.
type tester interface {
	require.TestingT
	Helper()
}

// running is a command left running at the end of a block: a parked poll or GET.
type running struct {
	command string
	cmd     *exec.Cmd
	out     bytes.Buffer
	done    chan error
}

// replay is one transcript being typed: the server's address, the directory the
// commands run in, what the reader's shell remembers, and per terminal the command
// still running.
type replay struct {
	t    tester
	addr string
	dir  string
	vars map[string]string
	left map[string]*running
}

// typingPause, off by default, waits before every command as a person typing would, to
// check that a transcript holds when typed by hand: go test -run Transcripts -typing-pause 30s
// (the runs are parallel, so the longest transcript sets the time: about 10 minutes).
var typingPause = flag.Duration("typing-pause", 0, "wait this long before each command of a transcript")

// patience is how long a command may take: a parked poll is answered within a presence
// tick or a ping interval of the transcript's flags, both a few seconds at most, and a
// slow machine gets plenty more.
const patience = 30 * time.Second

var (
	assignOutput  = regexp.MustCompile(`^([A-Z]+)=\$\((.*)\)$`) // ANN=$(curl ...)
	assignLiteral = regexp.MustCompile(`^([A-Z]+)='(.*)'$`)     // U='localhost:8080/...'
)

// replayTranscript types blocks into a fresh server started as block 1 says, in dir.
func replayTranscript(t tester, dir string, blocks []walkBlock) {
	t.Helper()
	require.Equal(t, "1", blocks[0].terminal, "terminal 1 starts the server")
	_, serverSteps := steps(blocks[0].lines)
	require.Len(t, serverSteps, 1)
	args, ok := strings.CutPrefix(serverSteps[0].command, "go run .")
	require.True(t, ok, "terminal 1 starts the server with go run .")
	addr, stop := startServer(t, strings.Fields(args))
	r := &replay{t: t, addr: addr, dir: dir, vars: map[string]string{}, left: map[string]*running{}}
	defer stop()
	defer r.killLeft() // on a failure, before the server stops
	for _, b := range blocks[1:] {
		r.block(b)
	}
	for term, run := range r.left {
		require.Empty(t, normalise([]string{r.finish(run)}), "terminal %s: %q printed what the page does not show", term, run.command)
	}
}

// startServer runs the program with args on a free loopback port, as go run . would.
func startServer(t tester, args []string) (addr string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs, logw := io.Pipe()
	ran := make(chan error, 1)
	go func() {
		ran <- run(ctx, append(args, "-addr", "127.0.0.1:0"), logw)
		logw.Close()
	}()
	line, err := bufio.NewReader(logs).ReadString('\n')
	if err != nil {
		cancel()
		require.NoError(t, <-ran, "the server did not start")
	}
	go io.Copy(io.Discard, logs)
	m := regexp.MustCompile(`url=http://(\S+)/`).FindStringSubmatch(line)
	if m == nil {
		cancel()
		require.FailNow(t, "no URL in the start-up line", "%s", line)
	}
	return m[1], func() { cancel(); require.NoError(t, <-ran) }
}

// block types one block: first the answer to the command its terminal left running,
// then each command, comparing outputs.
func (r *replay) block(b walkBlock) {
	r.t.Helper()
	leading, todo := steps(b.lines)
	if run := r.left[b.terminal]; run != nil {
		require.Equal(r.t, normalise(leading), normalise([]string{r.finish(run)}), "terminal %s: the answer to %q", b.terminal, run.command)
		delete(r.left, b.terminal)
	} else {
		require.Empty(r.t, normalise(leading), "terminal %s: output with no command before it", b.terminal)
	}
	for i, s := range todo {
		time.Sleep(*typingPause) // zero unless asked for: a person's pause, not a wait for an event
		if r.assign(s) {
			continue
		}
		run := r.start(s.command)
		if i == len(todo)-1 && len(s.want) == 0 {
			r.left[b.terminal] = run // the page shows its answer in a later block
			continue
		}
		require.Equal(r.t, normalise(s.want), normalise([]string{r.finish(run)}), "terminal %s: %s", b.terminal, s.command)
	}
}

// assign runs a shell variable assignment, which prints nothing, and remembers the value.
func (r *replay) assign(s step) bool {
	r.t.Helper()
	if m := assignLiteral.FindStringSubmatch(s.command); m != nil {
		r.vars[m[1]] = strings.ReplaceAll(m[2], "localhost:8080", r.addr)
	} else if m := assignOutput.FindStringSubmatch(s.command); m != nil {
		out, err := r.shell(m[2]).Output()
		require.NoError(r.t, err, s.command)
		r.vars[m[1]] = strings.TrimSpace(string(out))
		require.Regexp(r.t, `^[0-9a-f]{32}$`, r.vars[m[1]], s.command)
	} else {
		return false
	}
	require.Empty(r.t, normalise(s.want), "an assignment prints nothing: %s", s.command)
	return true
}

// shell is command as the reader's bash runs it, against this replay's server.
func (r *replay) shell(command string) *exec.Cmd {
	cmd := exec.Command("bash", "-c", strings.ReplaceAll(command, "localhost:8080", r.addr))
	cmd.Dir = r.dir
	cmd.Env = os.Environ()
	for k, v := range r.vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd
}

// start starts command without waiting for it.
func (r *replay) start(command string) *running {
	r.t.Helper()
	run := &running{command: command, cmd: r.shell(command), done: make(chan error, 1)}
	run.cmd.Stdout = &run.out
	require.NoError(r.t, run.cmd.Start())
	go func() { run.done <- run.cmd.Wait() }()
	return run
}

// finish waits for a command and returns its output.
func (r *replay) finish(run *running) string {
	r.t.Helper()
	select {
	case err := <-run.done:
		require.NoError(r.t, err, run.command)
	case <-time.After(patience):
		run.cmd.Process.Kill()
		require.FailNow(r.t, "still running", "%s", run.command)
	}
	return run.out.String()
}

// killLeft ends the commands a failed replay left running.
func (r *replay) killLeft() {
	for _, run := range r.left {
		run.cmd.Process.Kill()
	}
}

func TestTranscriptsMatchTheServer(t *testing.T) {
	for _, tool := range []string{"bash", "curl"} {
		_, err := exec.LookPath(tool)
		require.NoError(t, err, "the transcripts need %s (apt-get install -y %s)", tool, tool)
	}
	for _, tt := range transcripts {
		t.Run(tt.file+" "+tt.heading, func(t *testing.T) {
			t.Parallel() // each against a server of its own; the heartbeat's waits add up otherwise
			replayTranscript(t, t.TempDir(), consoleBlocks(t, section(t, tt.file, tt.heading)))
		})
	}
}

// TestEveryConsoleBlockIsReplayed finds every console block in the README and docs/ and
// checks it lies in a section the replay knows, so a new transcript cannot go unchecked.
func TestEveryConsoleBlockIsReplayed(t *testing.T) {
	replayed := map[string]int{}
	for _, tt := range transcripts {
		replayed[tt.file] += len(consoleBlocks(t, section(t, tt.file, tt.heading)))
	}
	files, err := filepath.Glob("docs/*.md")
	require.NoError(t, err)
	for _, file := range append(files, "README.md") {
		raw, err := os.ReadFile(file)
		require.NoError(t, err)
		n := strings.Count(string(raw), "\n```console\n")
		require.Equal(t, n, replayed[file], "%s has %d console blocks and %d are replayed: add its section to transcripts", file, n, replayed[file])
	}
}

// recorder is a tester that keeps failures instead of failing the test.
type recorder struct{ failures []string }

func (r *recorder) Errorf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}
func (r *recorder) FailNow() { runtime.Goexit() }
func (r *recorder) Helper()  {}

// TestADriftedTranscriptFails replays the README's walk-through with one output changed,
// and checks that the replay fails and names the step.
func TestADriftedTranscriptFails(t *testing.T) {
	tests := []struct {
		name     string
		give     string // a line of the walk-through, changed to want
		want     string
		failsFor string
	}{
		{"an output", `{"messages":[{"seq":1,"event":"online","data":1}]}`, `{"messages":[{"seq":1,"event":"online","data":7}]}`, `after=0`},
		{"a parked poll's answer", `{"messages":[{"seq":2,"event":"online","data":2}]}`, `{"messages":[{"seq":2,"event":"online","data":3}]}`, `the answer to`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blocks := consoleBlocks(t, section(t, transcripts[0].file, transcripts[0].heading))
			changed := 0
			for _, b := range blocks {
				for i, line := range b.lines {
					if line == tt.give {
						b.lines[i] = tt.want
						changed++
					}
				}
			}
			require.Equal(t, 1, changed, "the walk-through shows %s once", tt.give)
			rec, dir := &recorder{}, t.TempDir()
			done := make(chan struct{})
			go func() { defer close(done); replayTranscript(rec, dir, blocks) }()
			<-done
			require.NotEmpty(t, rec.failures, "a drifted transcript passed")
			require.Contains(t, rec.failures[0], tt.failsFor)
		})
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
