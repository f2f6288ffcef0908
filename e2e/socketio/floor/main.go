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

	var (
		mu   sync.Mutex
		wake = make(chan struct{}) // closed by the next POST
		body []byte                // that POST's body, read after wake closes
	)
	ok := []byte("ok")
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			if *park {
				mu.Lock()
				body = b
				close(wake)
				wake = make(chan struct{})
				mu.Unlock()
			}
			w.Write(ok)
			return
		}
		if !*park {
			w.Write(ok)
			return
		}
		mu.Lock()
		ch := wake
		mu.Unlock()
		select {
		case <-ch:
		case <-r.Context().Done():
			return
		}
		mu.Lock()
		b := body
		mu.Unlock()
		w.Write(b)
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
