package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Targets the restart mode prints its figures against: a restart must not
// keep users waiting, must not meet the new server with every client in the
// same instant, and must not make any client hammer it.
const (
	recoverWithin  = 15 * time.Second // SIGTERM to every client parked on the new server
	spreadAtLeast  = 2 * time.Second  // first to last successful POST /connect on the new server
	requestsAtMost = 10               // connects and polls any one client sends while recovering
)

// restart lets N clients park on a server it starts itself, stops that
// server with SIGTERM, starts it again on the same address, and measures how
// the clients, backing off as client.js does, come back: how long until all
// are parked on the new server, how widely their reconnects spread, and how
// many requests each sent meanwhile. Then a few broadcasts check that
// nothing sent after the recovery is lost, duplicated or reordered.
func restart(ctx context.Context, cfg config, args []string, base string) (bool, recovery) {
	var rec recovery
	fail := func(format string, args ...any) (bool, recovery) {
		err := fmt.Sprintf(format, args...)
		say("FAIL: %s", err)
		summary("restart", false, "n=%d error=%q", cfg.n, err)
		return false, rec
	}
	host := strings.TrimSuffix(strings.TrimPrefix(base, "http://"), "/")
	if conn, err := net.DialTimeout("tcp", host, time.Second); err == nil {
		conn.Close()
		return fail("something already listens on %s; stop it first, the restart mode starts its own server", host)
	}
	srv, err := startServer(ctx, args, host)
	if err != nil {
		return fail("%v", err)
	}
	defer func() { srv.kill() }() // srv is the newest process by then
	say("started the server (pid %d): %s", srv.pid(), strings.Join(args, " "))

	r, stop, rp, err := setup(ctx, cfg, base, cfg.n, 1)
	if err != nil {
		say("FAIL: %v", err)
		summary("restart", false, "n=%d %s", cfg.n, rp)
		return false, rec
	}
	defer stop()
	say("server rss with %d parked: %s", cfg.n, mib(probe{srv.pid()}.rss()))

	before := make([]int64, len(r.clients))
	for i, c := range r.clients {
		before[i] = c.requests.Load()
	}
	r.nextGen() // the SIGTERM follows at once: connect times count from here
	sigterm := time.Now()
	down, exitErr := srv.stop(30 * time.Second)
	say("SIGTERM: the server exited after %s (%s)", down.Round(time.Millisecond), exitStatus(exitErr))
	again, err := startServer(ctx, args, host)
	if err != nil {
		return fail("starting it again: %v", err)
	}
	srv = again
	up := time.Since(sigterm)
	say("started it again (pid %d), accepting %s after the SIGTERM", srv.pid(), up.Round(time.Millisecond))

	parked, _, at := r.waitParked(ctx, time.Second, 2*time.Minute, nil)
	recovered := at.Sub(sigterm)
	reqMax, reqMean := r.perClient(func(c *client) int64 { return c.requests.Load() - before[c.i] })
	first, last, conns, connAt := r.connectSpan()
	spread := last.Sub(first)
	rec = recovery{parked: parked, took: recovered, spread: spread, connects: conns, requestsMax: reqMax}
	say("recovery: %d/%d parked on the new server %s after the SIGTERM (target <= %s); %d connects to it, first %s and last %s after the SIGTERM: spread %s (target >= %s); requests per client while recovering max %d (target <= %d) mean %.2f",
		parked, cfg.n, recovered.Round(time.Millisecond), recoverWithin, conns,
		first.Sub(sigterm).Round(time.Millisecond), last.Sub(sigterm).Round(time.Millisecond), spread.Round(time.Millisecond), spreadAtLeast,
		reqMax, requestsAtMost, reqMean)
	say("connects to the new server, sent after the SIGTERM: p1 %s, p10 %s, p50 %s, p90 %s, p99 %s",
		sec(connAt.quantile(0.01)), sec(connAt.quantile(0.10)), sec(connAt.quantile(0.50)), sec(connAt.quantile(0.90)), sec(connAt.quantile(0.99)))
	say("server rss with %d parked after the restart: %s; %s", cfg.n, mib(probe{srv.pid()}.rss()), r.errors())

	pr := probe{srv.pid()}
	all := new(histogram)
	reached := parked >= cfg.n
	for b := 1; b <= cfg.broadcasts && ctx.Err() == nil && reached; b++ {
		reached = timeBroadcast(ctx, r, pr, b, all) && reached
	}
	stop()
	v := r.check()
	say("checks (every message sent after the recovery): %s %s", v, r.errors())
	down2, exitErr2 := srv.stop(30 * time.Second)
	say("SIGTERM again: the server exited after %s (%s)", down2.Round(time.Millisecond), exitStatus(exitErr2))

	rec.reached, rec.verdict = reached, v
	pass := parked >= cfg.n && recovered <= recoverWithin && spread >= spreadAtLeast && reqMax <= requestsAtMost &&
		reached && v.ok() && r.emitErrs.Load() == 0
	summary("restart", pass, "n=%d %s shutdown_s=%.2f shutdown_exit=%q parked=%d recovered_s=%.2f reconnect_spread_s=%.2f reconnect_p1_s=%.2f reconnect_p99_s=%.2f recovery_requests_max=%d recovery_requests_mean=%.2f broadcasts=%d %s %s",
		cfg.n, rp, down.Seconds(), exitStatus(exitErr), parked, recovered.Seconds(), spread.Seconds(),
		connAt.quantile(0.01).Seconds(), connAt.quantile(0.99).Seconds(), reqMax, reqMean,
		cfg.broadcasts, all.summary("wake_"), v)
	return pass, rec
}

// recovery is what the restart mode measured, for its tests.
type recovery struct {
	parked      int           // clients parked on the new server
	took        time.Duration // from the SIGTERM until they all were
	spread      time.Duration // first to last successful connect to the new server
	connects    int64         // successful connects to the new server
	requestsMax int64         // most requests one client sent meanwhile
	reached     bool          // every broadcast after the recovery reached every client
	verdict     verdict       // loss, duplicates and order of those broadcasts
}

// sec prints a duration in seconds with two decimals.
func sec(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

// serverURL finds the address in a server command line's -addr flag.
func serverURL(args []string) (string, error) {
	for i, a := range args {
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "addr" {
			continue
		}
		if !hasValue && i+1 < len(args) {
			value = args[i+1]
		}
		_, port, err := net.SplitHostPort(value)
		if err != nil || port == "0" || port == "" {
			return "", fmt.Errorf("-server needs a fixed -addr like 127.0.0.1:28080 to come back on, not %q", value)
		}
		return "http://" + value, nil
	}
	return "", errors.New("-server has no -addr: give one (127.0.0.1 and a fixed port), or give -url")
}

// serverProc is one server process the restart mode started.
type serverProc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited; err is then set
	err    error         // what Wait said
}

// startServer starts the command line args as a child process that dies with
// this one, and waits (at most 15 s) until it accepts connections on host.
func startServer(ctx context.Context, args []string, host string) (*serverProc, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr // stdout stays the tool's report
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &serverProc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		close(s.exited)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if conn, err := net.DialTimeout("tcp", host, time.Second); err == nil {
			conn.Close()
			return s, nil
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("the server exited before it listened on %s: %s", host, exitStatus(s.err))
		case <-ctx.Done():
			s.kill()
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return nil, fmt.Errorf("the server did not listen on %s within 15s", host)
		}
	}
}

// pid is the server's process id.
func (s *serverProc) pid() int { return s.cmd.Process.Pid }

// stop sends SIGTERM and waits for the exit; after limit it kills the
// process. It returns how long the exit took and how the process ended.
func (s *serverProc) stop(limit time.Duration) (time.Duration, error) {
	start := time.Now()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return time.Since(start), s.err
	case <-time.After(limit):
		s.kill()
		return time.Since(start), fmt.Errorf("still running %s after SIGTERM: killed", limit)
	}
}

// kill ends the process at once if it is still running, and waits for it.
func (s *serverProc) kill() {
	select {
	case <-s.exited:
	default:
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// exitStatus says how a server process ended, for the report.
func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
