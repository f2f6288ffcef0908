package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// wire is one keep-alive HTTP/1.1 connection spoken to by hand: each request is
// written in a single write, each response read with http.ReadResponse, just as a
// browser tab's connection carries its polls. net/http's client would cost more CPU
// per request than the server spends answering it (a handful of goroutine hand-offs
// per request), and on a 2-core machine every cycle the load generator burns is one
// the server does not get, so the figures would measure the tool, not the server.
type wire struct {
	host    string        // the Host header
	timeout time.Duration // a deadline for each request (polls: the server's poll timeout and a margin)
	dial    func() (net.Conn, error)
	buf     []byte // the request being written, reused

	mu     sync.Mutex // guards conn and closed against close from another goroutine
	conn   net.Conn
	br     *bufio.Reader
	closed bool
}

// errClosed is what a request on a closed wire returns.
var errClosed = errors.New("connection closed by the load test")

// newWire prepares a wire for client i; it dials on first use, from source
// address 127.0.0.(1 + i mod sources).
func newWire(cfg config, host string, i int) *wire {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: -1}
	if cfg.sources > 1 {
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%cfg.sources))}
	}
	return &wire{host: host, dial: func() (net.Conn, error) { return d.Dial("tcp", host) }}
}

// withTimeout gives every request on w a deadline.
func (w *wire) withTimeout(d time.Duration) *wire {
	w.timeout = d
	return w
}

// reply is one response: its status, headers and whole body.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request and returns its response. written, if not nil, is
// called once the request is on the wire. A request on a kept-alive
// connection that the server had closed is sent again once on a new connection,
// but only if no byte of a response arrived.
func (w *wire) do(method, target string, body []byte, written func()) (reply, error) {
	for attempt := 0; ; attempt++ {
		conn, br, reused, err := w.connection()
		if err != nil {
			return reply{}, err
		}
		rep, err := w.roundTrip(conn, br, method, target, body, written)
		if err == nil {
			return rep, nil
		}
		w.drop(conn)
		if !reused || attempt > 0 || !errors.Is(err, io.EOF) {
			return reply{}, err
		}
	}
}

// connection returns the open connection, dialing one if needed.
func (w *wire) connection() (net.Conn, *bufio.Reader, bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, nil, false, errClosed
	}
	if w.conn != nil {
		return w.conn, w.br, true, nil
	}
	conn, err := w.dial()
	if err != nil {
		return nil, nil, false, err
	}
	w.conn, w.br = conn, bufio.NewReaderSize(conn, 8<<10)
	return conn, w.br, false, nil
}

// roundTrip writes one request on conn and reads its response.
func (w *wire) roundTrip(conn net.Conn, br *bufio.Reader, method, target string, body []byte, written func()) (reply, error) {
	b := append(w.buf[:0], method...)
	b = append(b, ' ')
	b = append(b, target...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, w.host...)
	if method == http.MethodPost {
		b = append(b, "\r\nContent-Type: application/json\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
	}
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	w.buf = b
	if w.timeout > 0 {
		conn.SetDeadline(time.Now().Add(w.timeout))
	}
	if _, err := conn.Write(b); err != nil {
		return reply{}, err
	}
	if written != nil {
		written()
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) && br.Buffered() == 0 {
			err = io.EOF // closed before any byte of an answer: safe to send again
		}
		return reply{}, err
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return reply{}, fmt.Errorf("read body: %w", err)
	}
	if resp.Close {
		w.drop(conn)
	}
	return reply{resp.StatusCode, resp.Header, data}, nil
}

// drop closes conn if it is still the wire's connection, so the next request dials.
func (w *wire) drop(conn net.Conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	conn.Close()
	if w.conn == conn {
		w.conn, w.br = nil, nil
	}
}

// close ends the wire for good; a request blocked on it returns at once.
func (w *wire) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if w.conn != nil {
		w.conn.Close()
		w.conn, w.br = nil, nil
	}
}
