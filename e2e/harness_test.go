// Package e2e tests the chat the way a person meets it: the real program,
// started as a subprocess, and its page in a real headless Chromium. This
// file owns the harness (building and starting the server, starting the
// browser, opening tabs and watching their consoles); e2e_test.go holds
// the scenarios.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

var updateScreenshot = flag.Bool("update-screenshot", false,
	"write screenshot.png (also: E2E_UPDATE_SCREENSHOT=1)")

var (
	chromium  string // the browser binary; empty when none was found
	serverBin string // the program under test, built once by TestMain
)

// stepTimeout bounds one browser action, so a stuck page fails the test
// instead of hanging it until go test's own timeout.
const stepTimeout = 15 * time.Second

// TestMain builds the root program once for all tests. Under -race the
// program is built with -race too, so the browser's traffic also hunts for
// data races in the server.
func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runTests(m))
}

// runTests is TestMain's body, in a function of its own so that its deferred
// clean-up runs before os.Exit.
func runTests(m *testing.M) int {
	chromium = findChromium()
	if chromium == "" && os.Getenv("E2E_REQUIRE") != "1" {
		return m.Run() // every test skips; no need to build
	}
	dir, err := os.MkdirTemp("", "longpoll-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	serverBin = filepath.Join(dir, "longpoll")
	args := []string{"build", "-o", serverBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Dir = ".." // the root module, one folder up
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the server: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// findChromium returns the browser to drive, or "": E2E_CHROMIUM if set
// (another Chromium or Chrome binary), else Debian's Chromium.
func findChromium() string {
	if p := os.Getenv("E2E_CHROMIUM"); p != "" {
		if p, err := exec.LookPath(p); err == nil {
			return p
		}
		return ""
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	return ""
}

// requireChromium skips the test when there is no browser, unless
// E2E_REQUIRE=1 says that a missing browser is a failure (as in CI).
func requireChromium(t *testing.T) {
	t.Helper()
	if chromium != "" {
		return
	}
	const msg = "no Chromium found (looked for E2E_CHROMIUM, else chromium on PATH); install it with: apt-get install -y chromium"
	if os.Getenv("E2E_REQUIRE") == "1" {
		t.Fatal(msg + " (E2E_REQUIRE=1 makes this a failure)")
	}
	t.Skip(msg)
}

// server is one run of the program under test.
type server struct {
	cmd  *exec.Cmd
	url  string // the page, e.g. http://127.0.0.1:41234/
	addr string // host:port it bound, for a restart on the same port
	done chan struct{}
	mu   sync.Mutex
	log  strings.Builder // everything the program wrote to stderr
}

// urlLine finds the address in the program's start-up log line.
var urlLine = regexp.MustCompile(`url=(http://\S+)`)

// startServer starts the program on addr (use "127.0.0.1:0" for any free
// port) and waits for its start-up line. Cleanup stops it if the test has
// not, and shows its log when the test failed.
func startServer(t *testing.T, addr string, flags ...string) *server {
	t.Helper()
	requireChromium(t) // without a browser TestMain built nothing to start
	s := &server{done: make(chan struct{})}
	s.cmd = exec.Command(serverBin, append([]string{"-addr", addr}, flags...)...)
	s.cmd.SysProcAttr = procAttr()
	stderr, err := s.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, s.cmd.Start())

	found := make(chan string, 1) // buffered: the reader never waits for us
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			s.mu.Unlock()
			if m := urlLine.FindStringSubmatch(line); m != nil && len(found) == 0 {
				found <- m[1]
			}
		}
		// Wait only after the pipe is drained, as os/exec requires.
		s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("server %s log:\n%s", s.addr, s.logText())
		}
		if strings.Contains(s.logText(), "DATA RACE") {
			t.Errorf("the server reported a data race:\n%s", s.logText())
		}
	})

	select {
	case s.url = <-found:
	case <-s.done:
		t.Fatalf("the server exited before it said its URL:\n%s", s.logText())
	case <-time.After(stepTimeout):
		t.Fatalf("no line matching %s from the server in %v:\n%s", urlLine, stepTimeout, s.logText())
	}
	s.addr = strings.TrimSuffix(strings.TrimPrefix(s.url, "http://"), "/")
	return s
}

func (s *server) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// stop asks the program to shut down, as Ctrl-C would, and requires a clean
// and quick exit.
func (s *server) stop(t *testing.T) {
	t.Helper()
	start := time.Now()
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	// 5 s is generous on purpose: a busy CI machine is slow, and a -race
	// build sleeps 1 s at exit by design (GORACE atexit_sleep_ms).
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("the server did not exit within 5s of SIGTERM")
	}
	t.Logf("the server exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	require.Equal(t, 0, s.cmd.ProcessState.ExitCode(), "exit code after SIGTERM")
}

// kill ends the program at once, as a crash or a power cut would: no
// goodbye to anyone.
func (s *server) kill() {
	s.cmd.Process.Kill()
	<-s.done
}

// newBrowser starts a headless Chromium of the test's own, with its profile
// and temporary files under t.TempDir, and returns its context. The browser
// lives on a context without a deadline; each step gets its own timeout.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	requireChromium(t)
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	require.NoError(t, os.Mkdir(tmp, 0o700))
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox, // we run as root in CI, where the sandbox cannot start
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		// This machine has no network but loopback: without these flags the
		// browser keeps trying Google's services and fills the log with
		// refused connections.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(filepath.Join(dir, "profile")),
		chromedp.Env("TMPDIR="+tmp),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	require.NoError(t, chromedp.Do(ctx), "starting Chromium") // no deadline: see above
	return ctx
}

// tab is one page of the chat, in a browser context of its own (like a
// separate browser profile: no shared cookies or storage).
type tab struct {
	t    *testing.T
	name string
	ctx  context.Context

	// allowNetworkErrors lets the console show failed requests, which a
	// test that kills the server provokes on purpose. Everything else at
	// error level still fails the test.
	allowNetworkErrors bool

	polls atomic.Int64 // poll requests the page has sent

	mu       sync.Mutex
	problems []string // console errors and uncaught exceptions
	closed   bool
}

// openTab opens the page in a new browser context and starts watching its
// console. Cleanup fails the test if the console showed an error.
func openTab(t *testing.T, browser context.Context, name, url string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	tb := &tab{t: t, name: name, ctx: ctx}
	t.Cleanup(func() {
		tb.checkConsole()
		cancel()
	})
	// Listen before navigating, so not even the first message is missed.
	require.NoError(t, chromedp.Listen(ctx, tb.onEvent))
	tb.do(chromedp.EmulateViewport(480, 640), chromedp.Navigate(url))
	return tb
}

// onEvent runs on chromedp's reading goroutine: it only records.
func (tb *tab) onEvent(ev any) {
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		if strings.Contains(ev.Request.URL, "/poll?") {
			tb.polls.Add(1)
		}
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var args []string
			for _, a := range ev.Args {
				if a.Description != "" {
					args = append(args, a.Description)
				} else {
					args = append(args, string(a.Value))
				}
			}
			tb.addProblem("console.%s: %s", ev.Type, strings.Join(args, " "))
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		text := d.Text
		if d.Exception != nil {
			text += " " + d.Exception.Description
		}
		tb.addProblem("uncaught: %s (%s:%d)", text, d.URL, d.LineNumber+1)
	case *log.EventEntryAdded:
		e := ev.Entry
		if e.Level != log.EntryLevelError {
			return
		}
		if tb.allowNetworkErrors && e.Source == log.EntrySourceNetwork {
			return
		}
		tb.addProblem("log %s: %s (%s)", e.Source, e.Text, e.URL)
	}
}

func (tb *tab) addProblem(format string, args ...any) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.problems = append(tb.problems, fmt.Sprintf(format, args...))
}

// takeProblems returns the console problems seen so far and forgets them.
func (tb *tab) takeProblems() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	p := tb.problems
	tb.problems = nil
	return p
}

// checkConsole fails the test for every console error the tab showed.
func (tb *tab) checkConsole() {
	tb.mu.Lock()
	closed := tb.closed
	tb.mu.Unlock()
	if closed {
		return // checked when it closed
	}
	for _, p := range tb.takeProblems() {
		tb.t.Errorf("tab %s: console error: %s", tb.name, p)
	}
}

// close closes the tab the way a person does, so the page gets its
// pagehide event, and waits until the browser has let it go.
func (tb *tab) close() {
	tb.t.Helper()
	tb.checkConsole()
	tb.mu.Lock()
	tb.closed = true
	tb.mu.Unlock()
	detached, err := chromedp.Detached(tb.ctx)
	require.NoError(tb.t, err)
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	_, err = chromedp.Call(ctx, page.Close, cdp.Empty{})
	require.NoError(tb.t, err, "closing tab %s", tb.name)
	select {
	case <-detached:
	case <-ctx.Done():
		tb.t.Fatalf("tab %s did not close", tb.name)
	}
}

// do runs browser actions with a timeout.
func (tb *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	require.NoError(tb.t, chromedp.Do(ctx, actions...), "tab %s", tb.name)
}

// eval returns the value of a JavaScript expression in the tab.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	require.NoError(tb.t, err, "tab %s: %s", tb.name, expr)
	return v
}

// waitFor waits until a JavaScript expression is true in the page. The page
// itself polls the expression, so the wait ends the moment it holds. On a
// timeout the failure shows what the page showed.
func (tb *tab) waitFor(timeout time.Duration, expr string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, timeout+stepTimeout)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(20*time.Millisecond),
		chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		tb.t.Fatalf("tab %s: %s did not become true in %v: %v\npage: %s",
			tb.name, expr, timeout, err, tb.describe())
	}
}

// describe tells what a person would see in the tab, for failure messages.
func (tb *tab) describe() string {
	ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		status: document.querySelector("#status")?.textContent,
		online: document.querySelector("#online")?.textContent,
		notice: document.querySelector("#notice")?.textContent,
		messages: [...document.querySelectorAll("#messages li")].map(li => li.textContent),
	})`))
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return s
}

// Expressions over the page's visible state, shared by the scenarios.
const (
	jsMessages  = `[...document.querySelectorAll("#messages li")].map(li => li.querySelector("b").textContent + ": " + li.querySelector("span").textContent)`
	jsConnected = `document.querySelector("#status").textContent === "connected"`
)

func jsOnline(n int) string {
	return fmt.Sprintf(`document.querySelector("#online").textContent === "%d"`, n)
}

// jsHasMessage is true once the list shows the line "name: text".
func jsHasMessage(line string) string {
	return fmt.Sprintf(`%s.includes(%s)`, jsMessages, jsString(line))
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}

// messages returns the lines the tab shows, as "name: text".
func (tb *tab) messages() []string {
	tb.t.Helper()
	return eval[[]string](tb, jsMessages)
}

// setName types a name into the name box.
func (tb *tab) setName(name string) {
	tb.t.Helper()
	tb.do(chromedp.SetValue(chromedp.ID("name"), name))
}

// say puts a message in the box and clicks Send. (TestTwoTabsChat also
// types one key by key; doing that everywhere would only slow the tests.)
func (tb *tab) say(text string) {
	tb.t.Helper()
	tb.do(
		chromedp.SetValue(chromedp.ID("text"), text),
		chromedp.Click(chromedp.ID("send")),
	)
}
