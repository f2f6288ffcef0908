package main

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// floorEnv, when set to an address, makes the test binary serve the floor
// there instead of running tests, so the restart mode can start and stop it
// as a process of its own.
const floorEnv = "LOADTEST_TEST_FLOOR_ADDR"

func TestMain(m *testing.M) {
	if addr := os.Getenv(floorEnv); addr != "" {
		os.Exit(runMode(config{mode: "serve-baseline", addr: addr, pollTimeout: 25 * time.Second}))
	}
	os.Exit(m.Run())
}

// TestRestartAgainstTheFloor: clients parked on the floor are answered 503 on
// SIGTERM, come back to the new process after Retry-After, are told 410,
// connect again, and then miss nothing.
func TestRestartAgainstTheFloor(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the floor's Retry-After: a few seconds")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // the server processes bind it in turn
	t.Setenv(floorEnv, addr)
	t.Setenv("GORACE", "atexit_sleep_ms=0") // under -race, the child would sleep 1 s before every exit

	cfg := config{mode: "restart", n: 50, broadcasts: 2, concurrency: 10, sources: 1}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, rec := restart(ctx, cfg, []string{os.Args[0], "-test.run=^$"}, "http://"+addr+"/")
	require.Equal(t, cfg.n, rec.parked, "every client parked on the new server")
	require.Less(t, rec.took, recoverWithin)
	require.Equal(t, int64(cfg.n), rec.connects, "one connect each to the new server")
	require.Greater(t, rec.spread, time.Duration(0), "jittered")
	require.LessOrEqual(t, rec.requestsMax, int64(3), "the 410 poll, the connect, the parked poll")
	require.True(t, rec.reached)
	require.True(t, rec.verdict.ok(), "%s", rec.verdict)
	require.Equal(t, int64(2*cfg.n), rec.verdict.delivered)
	require.Equal(t, int64(cfg.n), rec.verdict.reconnected)
}

// TestServerURL: the restart mode finds where to come back in the server's
// own command line, and refuses an address it could not come back to.
func TestServerURL(t *testing.T) {
	for _, tt := range []struct {
		name string
		give []string
		want string // "" means an error
	}{
		{"-addr value", []string{"/tmp/srv", "-addr", "127.0.0.1:28080"}, "http://127.0.0.1:28080"},
		{"--addr=value", []string{"/tmp/srv", "--addr=127.0.0.1:28080", "-poll-timeout", "5s"}, "http://127.0.0.1:28080"},
		{"-addr after others", []string{"/tmp/lt", "-mode", "serve-baseline", "-addr", "127.0.0.2:28081"}, "http://127.0.0.2:28081"},
		{"no -addr", []string{"/tmp/srv"}, ""},
		{"port 0 would move", []string{"/tmp/srv", "-addr", "127.0.0.1:0"}, ""},
		{"no port", []string{"/tmp/srv", "-addr", "127.0.0.1"}, ""},
		{"-addr without value", []string{"/tmp/srv", "-addr"}, ""},
		{"a value that only looks like it", []string{"/tmp/srv", "-name", "addr"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := serverURL(tt.give)
			if tt.want == "" {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

// TestArrivalRate: -arrival takes "N/s" or "N".
func TestArrivalRate(t *testing.T) {
	for _, tt := range []struct {
		give    string
		want    arrivalRate
		wantErr bool
	}{
		{"500/s", 500, false},
		{"250", 250, false},
		{"0", 0, false},
		{"0.5/s", 0.5, false},
		{"-1/s", 0, true},
		{"fast", 0, true},
		{"Inf", 0, true},
	} {
		t.Run(tt.give, func(t *testing.T) {
			var a arrivalRate
			err := a.Set(tt.give)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, a)
		})
	}
}
