package main

// cluster.go is the cluster mode: fanout through a load balancer in front of
// several nodes (cluster/, docs/cluster.md), counting which node answered each
// client, and, given -server, one node that the tool starts itself, kills with
// SIGKILL in the middle of the run and starts again. Server CPU is summed over
// every process given in -pids (the other nodes and Redis) and the node it runs.

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The cluster mode's own flags, registered before main parses them.
var (
	clusterPids  = flag.String("pids", "", "cluster: comma-separated pids of the other server processes (nodes, Redis), for their CPU")
	clusterProxy = flag.Int("proxy-pid", 0, "cluster: the load balancer's pid, for its CPU (reported apart)")
	clusterDown  = flag.Duration("down", time.Second, "cluster: how long the killed node stays down")
)

// nodeSpread is which nodes answered each client's polls.
type nodeSpread struct {
	mu    sync.Mutex
	nodes []map[string]bool // by client index
}

// note records that node answered client c.
func (s *nodeSpread) note(c *client, h http.Header) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := h.Get("X-Node"); n != "" {
		s.nodes[c.i][n] = true
	}
}

// fewest is the fewest different nodes that answered any one client, and how
// many nodes answered at all.
func (s *nodeSpread) fewest() (int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all, least := map[string]bool{}, -1
	for _, m := range s.nodes {
		for n := range m {
			all[n] = true
		}
		if least < 0 || len(m) < least {
			least = len(m)
		}
	}
	return max(least, 0), len(all)
}

// cpuSum is CPU time over a set of processes, one of which may be killed and
// replaced: what a dead process spent is kept from its last reading.
type cpuSum struct {
	pids []int
	dead time.Duration
}

func (s *cpuSum) total(node *serverProc) time.Duration {
	var t time.Duration
	for _, pid := range s.pids {
		t += probe{pid}.cpu()
	}
	if node != nil {
		t += probe{node.pid()}.cpu()
	}
	return t + s.dead
}

// parsePids reads -pids.
func parsePids(list string) ([]int, error) {
	var pids []int
	for _, f := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' }) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("-pids: %q is not a pid", f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// clusterRun is fanout through the load balancer at base: N clients, one
// publisher at -rate for -duration. With -server it also kills that node
// halfway and starts it again after -down. It passes when nothing acknowledged
// was lost, duplicated or reordered, and every client was answered by at least
// two nodes.
func clusterRun(ctx context.Context, cfg config, base string) bool {
	pids, err := parsePids(*clusterPids)
	if err != nil {
		say("FAIL: %v", err)
		return false
	}
	args := strings.Fields(cfg.server)
	var node *serverProc
	if len(args) > 0 {
		if node, err = startNode(ctx, args); err != nil {
			say("FAIL: %v", err)
			return false
		}
		defer func() {
			if node != nil {
				node.kill()
			}
		}()
	}
	spread := &nodeSpread{nodes: make([]map[string]bool, cfg.n)}
	for i := range spread.nodes {
		spread.nodes[i] = map[string]bool{}
	}
	r, stop, _, err := setupWith(ctx, cfg, base, spread.note)
	if err != nil {
		say("FAIL: %v", err)
		return false
	}
	defer stop()
	node, f, ok := publish(ctx, cfg, r, &cpuSum{pids: pids}, node, args)
	return clusterReport(cfg, r, stop, f, spread) && ok
}

// startNode starts the node the run will kill, on the -addr of its command line.
func startNode(ctx context.Context, args []string) (*serverProc, error) {
	u, err := serverURL(args)
	if err != nil {
		return nil, err
	}
	node, err := startServer(ctx, args, strings.TrimPrefix(u, "http://"))
	if err == nil {
		say("started the node to kill (pid %d): %s", node.pid(), strings.Join(args, " "))
	}
	return node, err
}

// setupWith is setup, with note told about every poll answer's headers.
func setupWith(ctx context.Context, cfg config, base string, note func(*client, http.Header)) (*run, func(), ramp, error) {
	answerHook = note
	return setup(ctx, cfg, base, cfg.n, 1)
}

// answerHook, when set before a run starts, hears every poll answer's headers.
// The cluster mode sets it once, before any client runs, and never again.
var answerHook func(*client, http.Header)

// fanoutFigures is what publish measured.
type fanoutFigures struct {
	total            int
	took             time.Duration
	serverCPU, proxy time.Duration
	drained, killed  bool
}

// publish emits -rate messages a second for -duration from the first
// publisher; with a node to kill, a goroutine kills it halfway and starts it
// again after -down while the messages keep coming. It returns the node
// process running at the end.
func publish(ctx context.Context, cfg config, r *run, cpu *cpuSum, node *serverProc, args []string) (*serverProc, fanoutFigures, bool) {
	f := fanoutFigures{total: int(cfg.rate * cfg.duration.Seconds())}
	cpu0, proxy0, start := cpu.total(node), probe{*clusterProxy}.cpu(), time.Now()
	restarted := make(chan *serverProc, 1)
	for i := range f.total {
		sleep(ctx, time.Until(start.Add(time.Duration(float64(i)/cfg.rate*float64(time.Second)))))
		if ctx.Err() != nil {
			break
		}
		if node != nil && i == f.total/2 {
			f.killed = true
			go killAndRestart(ctx, cpu, node, args, restarted) // owns node until it sends the new one
			node = nil
		}
		r.emit(r.pubs[0])
	}
	if f.killed {
		node = <-restarted
	}
	f.drained = r.waitDelivered(ctx, r.pubs[0].succeeded(), 30*time.Second)
	f.took = time.Since(start)
	f.serverCPU, f.proxy = cpu.total(node)-cpu0, probe{*clusterProxy}.cpu()-proxy0
	return node, f, node != nil || !f.killed
}

// killAndRestart SIGKILLs node, keeps the CPU it had spent, and after -down
// starts the same command line again; it sends the new process (nil if it did
// not start) on restarted.
func killAndRestart(ctx context.Context, cpu *cpuSum, node *serverProc, args []string, restarted chan<- *serverProc) {
	cpu.dead += probe{node.pid()}.cpu()
	node.kill()
	say("SIGKILLed the node (pid %d) mid-fanout; starting it again in %s", node.pid(), *clusterDown)
	sleep(ctx, *clusterDown)
	again, err := startNode(ctx, args)
	if err != nil {
		say("starting the node again failed: %v", err)
	}
	restarted <- again
}

// clusterReport checks and prints the run.
func clusterReport(cfg config, r *run, stop func(), f fanoutFigures, spread *nodeSpread) bool {
	deliveries := r.delivered.Load()
	say("emitted %d messages (%d answered 204) in %s; drained=%v; deliveries %d",
		r.pubs[0].attempts.Load(), r.pubs[0].succeeded(), f.took.Round(time.Millisecond), f.drained, deliveries)
	say("server cpu (nodes and Redis) %s: %s per delivery; load balancer %s: %s per delivery",
		f.serverCPU, perUnit(f.serverCPU, deliveries, 1), f.proxy, perUnit(f.proxy, deliveries, *clusterProxy))
	say("latency emit->delivery: %s", r.lat.Load().summary(""))
	stop()
	v := r.check()
	fewest, nodes := spread.fewest()
	say("checks: %s %s; every client was answered by at least %d of the %d nodes that answered", v, r.errors(), fewest, nodes)
	// An emit cut by the kill may fail (502); the check counts it neither lost nor
	// delivered. Without a kill, every emit must succeed.
	emitsOK := r.emitErrs.Load() == 0 || f.killed
	pass := f.drained && v.ok() && fewest >= 2 && emitsOK
	summary("cluster", pass, "n=%d rate=%g duration=%s killed=%v deliveries=%d server_cpu_per_delivery=%s proxy_cpu_per_delivery=%s nodes=%d fewest_nodes_per_client=%d %s %s",
		cfg.n, cfg.rate, cfg.duration, f.killed, deliveries, perUnit(f.serverCPU, deliveries, 1), perUnit(f.proxy, deliveries, *clusterProxy),
		nodes, fewest, r.lat.Load().summary("latency_"), v)
	return pass
}
