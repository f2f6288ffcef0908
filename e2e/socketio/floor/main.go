// Command floor is the least a Go net/http server can do on the request shapes bench.mjs
// sends, so that the eio face can be compared with net/http itself and not only with
// socket.io. Standard library only; no per-client state.
//
//	floor            answers every GET and POST at once with "ok"
//	floor -park      parks every GET until a POST arrives, then answers all of them
//	                 with that POST's body (one shared wake) and the POST with "ok"
//
// It listens on 127.0.0.1:0 and prints url=http://127.0.0.1:PORT/ on stderr.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
)

func main() {
	park := flag.Bool("park", false, "park GETs until a POST")
	flag.Parse()

	// next is what the parked GETs wait for: done closes when a POST comes, and body
	// (written before the close) is that POST's body.
	type wake struct {
		done chan struct{}
		body []byte
	}
	var (
		mu   sync.Mutex
		next = &wake{done: make(chan struct{})}
	)
	ok := []byte("ok")
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			if *park {
				mu.Lock()
				cur := next
				next = &wake{done: make(chan struct{})}
				mu.Unlock()
				cur.body = b
				close(cur.done)
			}
			w.Write(ok)
			return
		}
		if !*park {
			w.Write(ok)
			return
		}
		mu.Lock()
		wk := next
		mu.Unlock()
		select {
		case <-wk.done:
		case <-r.Context().Done():
			return
		}
		w.Write(wk.body)
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "url=http://%s/ \n", ln.Addr())
	fmt.Fprintln(os.Stderr, http.Serve(ln, handler))
	os.Exit(1)
}
