// harness_test.go starts the real parts the tests stand on: a redis-server in a
// temporary folder, nodes (in this process, or as processes a test can SIGKILL), and
// nginx in front of them with round-robin and no affinity. Where redis-server or
// nginx is missing a local run skips, saying how to install it; under CI it fails.

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// need finds a program, or skips (fails under CI) saying how to install it.
func need(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required under CI: apt-get install -y %s", name, pkg)
	}
	t.Skipf("%s is not installed; to run this test: apt-get install -y %s", name, pkg)
	return ""
}

// freePort asks the kernel for a free loopback port.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// redisServer is one redis-server process with its folder, which survives a restart.
type redisServer struct {
	t      testing.TB
	addr   string
	dir    string
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has ended
}

// startRedis starts redis-server on a free port with the append-only file on, so
// that a restart keeps what was acknowledged. A port taken between freePort and
// Redis's bind (this machine runs other work) is tried again with another.
func startRedis(t testing.TB) *redisServer {
	need(t, "redis-server", "redis-server")
	r := &redisServer{t: t, dir: t.TempDir()}
	t.Cleanup(r.kill)
	var err error
	for range 5 {
		r.addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		if err = r.try(); err == nil {
			return r
		}
	}
	require.NoError(t, err)
	return r
}

// start runs redis-server again on its address and folder.
func (r *redisServer) start() { require.NoError(r.t, r.try()) }

// try runs redis-server and waits until it answers PING, or says why not.
func (r *redisServer) try() error {
	_, port, _ := net.SplitHostPort(r.addr)
	logFile := filepath.Join(r.dir, "log")
	r.cmd = exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", r.dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no", "--logfile", logFile)
	if err := r.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { r.cmd.Wait(); close(exited) }() // owns the process's end; closes exited
	r.exited = exited
	rdb := redis.NewClient(&redis.Options{Addr: r.addr})
	defer rdb.Close()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		select {
		case <-exited:
			log, _ := os.ReadFile(logFile)
			return fmt.Errorf("redis-server on %s exited: %s", r.addr, log)
		default:
		}
		if rdb.Ping(context.Background()).Err() == nil {
			return nil
		}
	}
	r.kill()
	return fmt.Errorf("redis-server on %s did not answer within 10 s", r.addr)
}

// restart stops Redis cleanly (SHUTDOWN flushes the append-only file) and starts it again.
func (r *redisServer) restart() {
	r.stop()
	r.start()
}

// stop shuts Redis down and waits for the process to end.
func (r *redisServer) stop() {
	rdb := redis.NewClient(&redis.Options{Addr: r.addr})
	rdb.Shutdown(context.Background()) // its connection closes: the error says nothing
	rdb.Close()
	<-r.exited
}

// wipe stops Redis and deletes its files: a restart that lost everything.
func (r *redisServer) wipe() {
	r.stop()
	entries, _ := os.ReadDir(r.dir)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(r.dir, e.Name()))
	}
}

func (r *redisServer) kill() {
	if r.cmd != nil && r.exited != nil {
		r.cmd.Process.Kill()
		<-r.exited
	}
}

// client is a test's own Redis connection.
func (r *redisServer) client() *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: r.addr})
	r.t.Cleanup(func() { rdb.Close() })
	return rdb
}

// testFlags are short durations, so that the stories run in moments.
var testFlags = []string{"-poll-timeout", "2s", "-client-ttl", "1s", "-presence-every", "100ms", "-static", "../static"}

// startNode runs a node in this process on a free port and returns its address.
func startNode(t testing.TB, redisAddr string, extra ...string) string {
	t.Helper()
	cfg, o, err := parse(append(append([]string{"-redis", redisAddr}, testFlags...), extra...), io.Discard)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	capped, hosts, _, err := atTheDoor(ln, o)
	require.NoError(t, err)
	st := newStore(cfg, o)
	name := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() {
		done <- serve(ctx, capped, cfg, st, &api{cfg: cfg, st: st, node: name, hosts: hosts}, os.DirFS(o.static), log)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		st.rdb.Close()
	})
	return name
}

// testWriter sends a node's warnings to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// bin is where nodeBinary builds the node program, once per test run.
var bin = filepath.Join(os.TempDir(), fmt.Sprintf("longpoll-cluster-test-%d", os.Getpid()))

// TestMain removes the node program the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	os.Remove(bin)
	os.Exit(code)
}

// nodeBinary builds the node program, if no test has yet.
func nodeBinary(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(bin); err != nil {
		out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
		require.NoError(t, err, "go build: %s", out)
	}
	return bin
}

// nodeProcess is a node in its own process, for a test that kills it.
type nodeProcess struct {
	addr string
	cmd  *exec.Cmd
}

// startNodeProcess runs a node as a process on addr (a fixed port, so that its
// restart takes the same place behind nginx) and waits until it serves.
func startNodeProcess(t testing.TB, addr, redisAddr string, extra ...string) *nodeProcess {
	t.Helper()
	args := append(append([]string{"-addr", addr, "-node", addr, "-redis", redisAddr}, testFlags...), extra...)
	cmd := exec.Command(nodeBinary(t), args...)
	cmd.Stderr = testWriter{t}
	require.NoError(t, cmd.Start())
	n := &nodeProcess{addr: addr, cmd: cmd}
	t.Cleanup(n.kill)
	require.Eventually(t, func() bool {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err == nil
	}, 20*time.Second, 10*time.Millisecond, "node %s did not start", addr)
	return n
}

// kill ends the node with SIGKILL: no goodbye, no shutdown.
func (n *nodeProcess) kill() {
	if n.cmd.ProcessState == nil {
		n.cmd.Process.Signal(syscall.SIGKILL)
		n.cmd.Wait()
	}
}

// nginxConf puts nodes behind one address with round-robin and no affinity. A node
// that fails is left out for a second; a poll it held is passed to the next node
// (GET is idempotent here: the cursor says what to send). An emit is not passed on
// once sent: it may have been appended already. It passes the browser's Host on
// ($http_host, port included), so that a node's Host check and cross-origin check
// (guard.go) see what the browser sent, not the upstream's name.
const nginxConf = `%s
worker_processes 1;
error_log %[2]s/error.log warn;
pid %[2]s/nginx.pid;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path %[2]s/body;
  proxy_temp_path %[2]s/proxy;
  fastcgi_temp_path %[2]s/fastcgi;
  uwsgi_temp_path %[2]s/uwsgi;
  scgi_temp_path %[2]s/scgi;
  upstream nodes {
%[3]s    keepalive 256;
  }
  server {
    listen %[4]s;
    keepalive_requests 1000000;
    client_max_body_size 1m;
    location / {
      proxy_pass http://nodes;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_buffering off;
      proxy_read_timeout 60s;
      proxy_next_upstream error timeout;
    }
  }
}
`

// writeNginxConf writes the config for nodes, listening on addr, into dir.
func writeNginxConf(dir, addr string, nodes []string) string {
	var servers strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&servers, "    server %s max_fails=1 fail_timeout=1s;\n", n)
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // workers would otherwise run as nobody, who cannot reach dir
	}
	conf := filepath.Join(dir, "nginx.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, user, dir, servers.String(), addr)), 0o644)
	return conf
}

// startNginx runs nginx in front of nodes and returns its base URL. A port taken
// between freePort and nginx's bind is tried again with another.
func startNginx(t testing.TB, nodes []string) string {
	t.Helper()
	need(t, "nginx", "nginx")
	dir := t.TempDir()
	var err error
	for range 5 {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		var cmd *exec.Cmd
		var exited <-chan error
		if cmd, exited, err = tryNginx(dir, addr, nodes); err == nil {
			t.Cleanup(func() {
				cmd.Process.Signal(syscall.SIGTERM)
				<-exited
			})
			return "http://" + addr
		}
	}
	require.NoError(t, err)
	return ""
}

// tryNginx starts nginx on addr and waits until it serves the page, or says why not.
func tryNginx(dir, addr string, nodes []string) (*exec.Cmd, <-chan error, error) {
	conf := writeNginxConf(dir, addr, nodes)
	cmd := exec.Command("nginx", "-p", dir, "-c", conf, "-g", "daemon off;")
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // owns the process's end; sends it once
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return nil, nil, fmt.Errorf("nginx on %s exited (%v): %s", addr, err, log)
		default:
		}
		if resp, err := http.Get("http://" + addr + "/index.html"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return cmd, exited, nil
			}
		}
	}
	cmd.Process.Kill()
	<-exited
	return nil, nil, fmt.Errorf("nginx on %s did not serve within 10 s", addr)
}

// cluster is Redis, three nodes in this process and nginx in front of them.
func startCluster(t testing.TB, extra ...string) (*redisServer, string) {
	r := startRedis(t)
	var nodes []string
	for range 3 {
		nodes = append(nodes, startNode(t, r.addr, extra...))
	}
	return r, startNginx(t, nodes)
}

// answer is one HTTP response, read whole.
type answer struct {
	status int
	header http.Header
	body   string
}

// do sends one request; a body goes as application/json.
func do(t testing.TB, method, url, body string) answer {
	t.Helper()
	ct := ""
	if body != "" {
		ct = "application/json"
	}
	return doTyped(t, method, url, body, ct)
}

// doTyped sends one request with the given Content-Type, if any.
func doTyped(t testing.TB, method, url, body, contentType string) answer {
	t.Helper()
	a, err := send(method, url, body, contentType)
	require.NoError(t, err)
	return a
}

// doQuiet is a GET for another goroutine than the test's: it reports a failure as
// status 0 with the error as body, for the test's goroutine to check.
func doQuiet(url string) answer {
	a, err := send("GET", url, "", "")
	if err != nil {
		return answer{body: err.Error()}
	}
	return a
}

// send sends one request and reads the whole answer.
func send(method, url, body, contentType string) (answer, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}, err
}

// connect registers a client and returns its id.
func connect(t testing.TB, base string) string {
	t.Helper()
	a := do(t, "POST", base+"/connect", "")
	require.Equal(t, 200, a.status, a.body)
	var v struct{ ID string }
	require.NoError(t, json.Unmarshal([]byte(a.body), &v))
	require.Len(t, v.ID, 32)
	return v.ID
}

// message is one message of a poll answer.
type message struct {
	Seq   uint64          `json:"seq"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

// poll asks for what comes after `after` and wants a 200.
func poll(t testing.TB, base, id string, after uint64) []message {
	t.Helper()
	a := do(t, "GET", fmt.Sprintf("%s/poll?id=%s&after=%d", base, id, after), "")
	require.Equal(t, 200, a.status, a.body)
	var v struct{ Messages []message }
	require.NoError(t, json.Unmarshal([]byte(a.body), &v))
	require.NotNil(t, v.Messages, a.body)
	return v.Messages
}

// emit sends a chat message and wants a 204.
func emit(t testing.TB, base, id, data string) {
	t.Helper()
	a := do(t, "POST", base+"/emit?id="+id, `{"event":"chat","data":`+data+`}`)
	require.Equal(t, 204, a.status, a.body)
}
