package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// slow measures what readers too slow for their backlog cost the server. A
// publisher fills every mailbox with -backlog-mib of large messages while n
// readers do not poll; then each reader drains its backlog at -read-rate bytes
// a second on a connection with a small receive buffer, as a phone on a bad
// link does. The server's resident memory must grow by no more than what its
// answers in flight may hold (n x -max-batch) plus a 20 MiB margin for the
// runtime; a server that builds a private copy of the backlog for every answer
// grows by n times the backlog. Readers check what they get for gaps, repeats
// and order. It runs for -duration; a reader at 8 KB/s does not finish a 57 MiB
// backlog, and need not: the point is the memory while it tries.
func slow(ctx context.Context, cfg config, base string) bool {
	host := strings.TrimSuffix(strings.TrimPrefix(base, "http://"), "/")
	pr := probe{cfg.pid}
	hc := &http.Client{Timeout: 30 * time.Second}
	connect := func() (string, error) {
		resp, err := hc.Post(base+"connect", "", nil)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var body struct{ ID string }
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("connect: %d %v", resp.StatusCode, err)
		}
		return body.ID, nil
	}

	// Each reader takes its own count first, so that its cursor may acknowledge it.
	readers := make([]*slowReader, cfg.n)
	for i := range readers {
		id, err := connect()
		if err != nil {
			summary("slow", false, "error=%q", err.Error())
			return false
		}
		readers[i] = &slowReader{id: id}
		if _, err := readers[i].poll(ctx, host, cfg.readRate); err != nil {
			summary("slow", false, "error=%q", err.Error())
			return false
		}
	}
	pub, err := connect()
	if err != nil {
		summary("slow", false, "error=%q", err.Error())
		return false
	}
	rssEmpty := pr.rss()

	// The backlog: numbered messages of msgBytes each, shared by every mailbox.
	const msgBytes = 60_000
	count := cfg.backlogMiB << 20 / msgBytes
	pad := strings.Repeat("x", msgBytes)
	for n := range count {
		body := fmt.Sprintf(`{"event":"bulk","data":{"n":%d,"pad":%q}}`, n, pad)
		resp, err := hc.Post(base+"emit?id="+pub, "application/json", strings.NewReader(body))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				err = fmt.Errorf("emit %d: status %d", n, resp.StatusCode)
			}
		}
		if err != nil {
			summary("slow", false, "error=%q", err.Error())
			return false
		}
	}
	rssBacklog := pr.rss()
	say("backlog: %d messages of %d bytes in each of %d mailboxes; server rss %s before, %s after",
		count, msgBytes, cfg.n+1, mib(rssEmpty), mib(rssBacklog))

	// The readers drain it slowly, each on its own goroutine; memory is sampled meanwhile.
	runCtx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()
	var wg sync.WaitGroup
	for _, rd := range readers {
		wg.Go(func() {
			for runCtx.Err() == nil {
				if _, err := rd.poll(runCtx, host, cfg.readRate); err != nil && runCtx.Err() == nil {
					rd.err = err
					return
				}
			}
		})
	}
	var peak int64
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for sampling := true; sampling; {
		select {
		case <-runCtx.Done():
			sampling = false
		case <-tick.C:
			peak = max(peak, pr.rss())
			if cfg.every > 0 {
				say("rss %s", mib(pr.rss()))
			}
		}
	}
	wg.Wait()

	var got, bad int64
	for _, rd := range readers {
		got += rd.got.Load()
		if rd.err != nil {
			bad++
			say("reader %s: %v", rd.id[:8], rd.err)
		}
	}
	growth := peak - rssBacklog
	limit := int64(cfg.n)*int64(cfg.maxBatch) + 20<<20
	pass := bad == 0 && got > 0 && growth <= limit
	summary("slow", pass, "readers=%d read_rate=%dB/s backlog_msgs=%d backlog_mib=%d rss_backlog=%s rss_peak=%s growth=%s limit=%s messages_read=%d reader_errors=%d",
		cfg.n, cfg.readRate, count, cfg.backlogMiB, mib(rssBacklog), mib(peak), mib(growth), mib(limit), got, bad)
	return pass
}

// slowReader is one reader: its id, its cursor, and what it has read.
type slowReader struct {
	id    string
	after int64 // the highest seq read: the next poll's cursor
	next  int   // the next bulk number expected
	got   atomic.Int64
	err   error
}

// poll sends one poll on a connection of its own with a 4 KiB receive buffer and
// reads the answer at about rate bytes a second, checking seqs and numbers.
func (rd *slowReader) poll(ctx context.Context, host string, rate int) (int, error) {
	conn, err := net.Dial("tcp", host)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4 << 10)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	fmt.Fprintf(conn, "GET /poll?id=%s&after=%d HTTP/1.1\r\nHost: %s\r\n\r\n", rd.id, rd.after, host)
	resp, err := http.ReadResponse(bufio.NewReaderSize(&throttled{r: conn, rate: rate}, 1024), nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return 0, fmt.Errorf("poll: status %d %s", resp.StatusCode, b)
	}
	var body struct {
		Messages []struct {
			Seq   int64           `json:"seq"`
			Event string          `json:"event"`
			Data  json.RawMessage `json:"data"`
		} `json:"messages"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	for _, m := range body.Messages {
		if m.Seq != rd.after+1 {
			return 0, fmt.Errorf("seq %d after %d", m.Seq, rd.after)
		}
		rd.after = m.Seq
		if m.Event != "bulk" {
			continue
		}
		var bulk struct{ N int }
		if err := json.Unmarshal(m.Data, &bulk); err != nil {
			return 0, err
		}
		if bulk.N != rd.next {
			return 0, fmt.Errorf("bulk %d, expected %d", bulk.N, rd.next)
		}
		rd.next++
		rd.got.Add(1)
	}
	return len(body.Messages), nil
}

// throttled reads at most rate bytes a second, a tenth of a second's worth at a time.
type throttled struct {
	r    io.Reader
	rate int
}

func (t *throttled) Read(p []byte) (int, error) {
	chunk := max(t.rate/10, 1)
	time.Sleep(100 * time.Millisecond)
	return t.r.Read(p[:min(len(p), chunk)])
}
