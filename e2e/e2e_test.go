package e2e

// e2e_test.go holds the scenarios: each test tells one story a person could
// act out with two browser tabs. Every tab also fails its test on any console
// error (see openTab), so "no console errors" is checked in all of them.
// Each test has its own server and browser, so they run in parallel.

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/require"
)

// Short durations, so that no test waits for the production defaults.
var quick = []string{"-poll-timeout", "2s", "-client-ttl", "10s"}

// TestTwoTabsChat: two people in two tabs see each other, and see every
// message in the same order.
func TestTwoTabsChat(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "127.0.0.1:0", quick...)
	ada, bob := twoTabs(t, srv)
	ada.setName("Ada")
	bob.setName("Bob")

	// Typed key by key and sent with Enter, as a person would.
	ada.do(chromedp.SendKeys(chromedp.ID("text"), "hello from Ada"+kb.Enter))
	for _, tb := range []*tab{ada, bob} {
		tb.waitFor(5*time.Second, jsHasMessage("Ada: hello from Ada"))
	}
	bob.say("hi Ada, Bob here")
	for _, tb := range []*tab{ada, bob} {
		tb.waitFor(5*time.Second, jsHasMessage("Bob: hi Ada, Bob here"))
	}

	// Both type at the same time; the server's single hub picks one order,
	// and both tabs must show that same order.
	const burst = 5
	var wg sync.WaitGroup
	errs := make(chan error, 2*burst)
	for _, tb := range []*tab{ada, bob} {
		wg.Go(func() {
			for i := range burst {
				ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
				errs <- chromedp.Do(ctx,
					chromedp.SetValue(chromedp.ID("text"), fmt.Sprintf("%s burst %d", tb.name, i)),
					chromedp.Click(chromedp.ID("send")))
				cancel()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	want := 2 + 2*burst
	for _, tb := range []*tab{ada, bob} {
		tb.waitFor(10*time.Second, fmt.Sprintf(`%s.length === %d`, jsMessages, want))
	}
	require.Equal(t, ada.messages(), bob.messages(), "both tabs show the same order")
}

// TestIdlePollParks: an idle tab keeps one request parked on the server and
// asks again only when the server's poll timeout answers it. A page that
// spun would send hundreds of requests in the same time.
func TestIdlePollParks(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "127.0.0.1:0", quick...) // -poll-timeout 2s
	browser := newBrowser(t)
	tb := openTab(t, browser, "idle", srv.url)
	tb.waitFor(5*time.Second, jsConnected+" && "+jsOnline(1))

	// Open the window with a poll going out, so the count does not depend
	// on where the window falls between two polls. Over 6 idle seconds the
	// page should send 3 polls (at 0, 2 and 4 s), not hundreds.
	start := tb.polls.Load()
	require.Eventually(t, func() bool { return tb.polls.Load() > start },
		5*time.Second, 10*time.Millisecond, "no new poll within the 2s poll timeout")
	require.Never(t, func() bool { return tb.polls.Load()-start > 5 },
		6*time.Second, 50*time.Millisecond, "the page spins instead of parking")
	n := tb.polls.Load() - start
	t.Logf("%d poll requests in 6 idle seconds with -poll-timeout 2s", n)
	require.GreaterOrEqual(t, n, int64(2), "the page stopped polling")
	tb.waitFor(time.Second, jsConnected)
}

// TestGoodbye: closing a tab tells the server at once (sendBeacon on
// pagehide), so the other tab's count drops long before -client-ttl.
func TestGoodbye(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "127.0.0.1:0", "-poll-timeout", "2s", "-client-ttl", "60s")
	ada, bob := twoTabs(t, srv)

	bob.close()
	ada.waitFor(2*time.Second, jsOnline(1))
}

// TestServerRestart: the server dies and comes back on the same port. The
// page shows that it is reconnecting, reconnects by itself, says that
// messages may have been missed, and the chat works again.
func TestServerRestart(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "127.0.0.1:0", quick...)
	browser := newBrowser(t)
	ada := openTab(t, browser, "ada", srv.url)
	bob := openTab(t, browser, "bob", srv.url)
	tabs := []*tab{ada, bob}
	for _, tb := range tabs {
		// Refused connections while the server is down are the point of
		// this test; the browser logs each one as an error.
		tb.allowNetworkErrors = true
		tb.waitFor(5*time.Second, jsConnected+" && "+jsOnline(2))
	}
	ada.setName("Ada")
	bob.setName("Bob")
	ada.say("before the crash")
	bob.waitFor(5*time.Second, jsHasMessage("Ada: before the crash"))

	srv.kill()
	for _, tb := range tabs {
		tb.waitFor(5*time.Second, `document.querySelector("#status").textContent === "reconnecting"`)
	}

	// A message typed while the server is away is not lost in silence: the
	// page says so and gives the text back.
	ada.say("into the void")
	ada.waitFor(5*time.Second, `document.querySelector("#notice").textContent.includes("Not sent") &&
		document.querySelector("#text").value === "into the void"`)

	srv2 := startServer(t, srv.addr, quick...)
	for _, tb := range tabs {
		// The back-off grows to 10 s at most; both tabs are back well
		// before that since the server was gone only briefly.
		tb.waitFor(15*time.Second, jsConnected+" && "+jsOnline(2))
		tb.waitFor(time.Second, `!document.querySelector("#notice").hidden &&
			document.querySelector("#notice").textContent.includes("may be missing")`)
	}
	ada.say("after the restart")
	bob.waitFor(5*time.Second, jsHasMessage("Ada: after the restart"))
	bob.say("I can hear you again")
	ada.waitFor(5*time.Second, jsHasMessage("Bob: I can hear you again"))

	// Ctrl-C with both tabs' polls parked: the server answers them and
	// exits 0 at once instead of waiting out the poll timeout.
	srv2.stop(t)
}

// TestHostileText: what people type is shown as text, never run as HTML.
func TestHostileText(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "127.0.0.1:0", quick...)
	ada, bob := twoTabs(t, srv)

	tests := []struct {
		name     string
		giveName string
		giveText string
	}{
		{"img onerror in text", "Mallory", `<img src=x onerror="window.pwned=1">`},
		{"script in text", "Mallory", `<script>window.pwned=2</script>`},
		{"markup in name", `<img src=y onerror="window.pwned=3">`, "hi"},
		{"entities stay literal", "Mallory", `&lt;b&gt; &amp; <b>bold?</b>`},
	}
	// One loop, not subtests: the tabs belong to this test's t, and their
	// helpers must fail it from its own goroutine.
	for _, tt := range tests {
		ada.setName(tt.giveName)
		ada.say(tt.giveText)
		bob.waitFor(5*time.Second, jsHasMessage(tt.giveName+": "+tt.giveText))
		for _, tb := range []*tab{ada, bob} {
			require.True(t, eval[bool](tb, `typeof window.pwned === "undefined"`),
				"%s: tab %s ran the text", tt.name, tb.name)
			require.Zero(t, eval[int](tb, `document.querySelectorAll("#messages li *:not(b, span)").length`),
				"%s: tab %s made elements from the text", tt.name, tb.name)
		}
	}
}

// TestNoConsoleErrors: a whole visit (load, chat, reload, chat) leaves the
// console clean. It also checks the watcher itself, so a silent watcher
// cannot make every other test pass by seeing nothing.
func TestNoConsoleErrors(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "127.0.0.1:0", quick...)
	browser := newBrowser(t)
	tb := openTab(t, browser, "solo", srv.url)
	tb.waitFor(5*time.Second, jsConnected)
	tb.say("first visit")
	tb.waitFor(5*time.Second, `document.querySelectorAll("#messages li").length === 1`)
	tb.do(chromedp.Reload())
	tb.waitFor(5*time.Second, jsConnected+" && "+jsOnline(1))
	tb.say("after a reload")
	tb.waitFor(5*time.Second, `document.querySelectorAll("#messages li").length === 1`)
	require.Empty(t, tb.takeProblems())

	// The watcher sees an error and an uncaught exception.
	tb.do(chromedp.Evaluate[chromedp.Void](`console.error("canary"); setTimeout(() => { throw new Error("canary") })`))
	require.Eventually(t, func() bool {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		return len(tb.problems) == 2
	}, 5*time.Second, 20*time.Millisecond, "the console watcher missed the canaries")
	for _, p := range tb.takeProblems() {
		require.Contains(t, p, "canary")
	}
}

// TestScreenshot: two people chatting, side by side, as the README shows.
// The image is written only with -update-screenshot or E2E_UPDATE_SCREENSHOT=1,
// so a normal run leaves the work tree alone.
func TestScreenshot(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "127.0.0.1:0", quick...)
	ada, bob := twoTabs(t, srv)
	ada.setName("Ada")
	bob.setName("Bob")
	lines := []struct {
		who  *tab
		text string
	}{
		{ada, "Hi Bob! Is this really plain HTTP?"},
		{bob, "Yes: my browser keeps one request parked on the server."},
		{ada, "And the server answers it the moment I send this?"},
		{bob, "Exactly, then my page asks again at once."},
		{ada, "No WebSocket needed. Neat."},
	}
	for i, l := range lines {
		l.who.say(l.text)
		for _, tb := range []*tab{ada, bob} {
			tb.waitFor(5*time.Second, fmt.Sprintf(`%s.length === %d`, jsMessages, i+1))
		}
	}

	var shots []image.Image
	for _, tb := range []*tab{ada, bob} {
		tb.do(chromedp.EmulateViewport(480, 480), // short: five lines need little room
			chromedp.Blur(chromedp.ID("text"))) // and no caret in the picture
		ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
		b, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		cancel()
		require.NoError(t, err)
		img, err := png.Decode(bytes.NewReader(b))
		require.NoError(t, err)
		shots = append(shots, img)
	}
	out := sideBySide(shots, 16)
	require.Greater(t, out.Bounds().Dx(), 800)

	if *updateScreenshot || os.Getenv("E2E_UPDATE_SCREENSHOT") == "1" {
		var buf bytes.Buffer
		require.NoError(t, png.Encode(&buf, out))
		require.NoError(t, os.WriteFile("screenshot.png", buf.Bytes(), 0o644))
		t.Logf("wrote screenshot.png (%d bytes)", buf.Len())
	}
}

// sideBySide puts images next to each other with a gap between them.
func sideBySide(imgs []image.Image, gap int) *image.RGBA {
	w, h := gap*(len(imgs)+1), 0
	for _, im := range imgs {
		w += im.Bounds().Dx()
		h = max(h, im.Bounds().Dy())
	}
	out := image.NewRGBA(image.Rect(0, 0, w, h+2*gap))
	draw.Draw(out, out.Bounds(), image.NewUniform(color.RGBA{0x44, 0x4a, 0x55, 0xff}), image.Point{}, draw.Src)
	x := gap
	for _, im := range imgs {
		r := im.Bounds()
		draw.Draw(out, image.Rect(x, gap, x+r.Dx(), gap+r.Dy()), im, r.Min, draw.Src)
		x += r.Dx() + gap
	}
	return out
}

// twoTabs opens Ada's and Bob's tabs in a browser of their own and waits until
// both are connected and count each other online.
func twoTabs(t *testing.T, srv *server) (ada, bob *tab) {
	t.Helper()
	browser := newBrowser(t)
	ada = openTab(t, browser, "ada", srv.url)
	bob = openTab(t, browser, "bob", srv.url)
	for _, tb := range []*tab{ada, bob} {
		tb.waitFor(5*time.Second, jsConnected+" && "+jsOnline(2))
	}
	return ada, bob
}
