// Command upstream is the benchmark's backend: every request gets 200 and
// the same small JSON body (about 200 bytes), as fast as net/http allows.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
)

var body = []byte(`{"id":"ord_0001","status":"shipped","customer":"cus_4711","currency":"EUR",` +
	`"total":12999,"items":[{"sku":"sku-123","qty":2},{"sku":"sku-456","qty":1}],` +
	`"created":"2026-01-02T03:04:05Z","note":"benchmark upstream response body"}` + "\n")

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	length := strconv.Itoa(len(body))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr["Content-Type"] = []string{"application/json"}
		hdr["Content-Length"] = []string{length}
		_, _ = w.Write(body)
	})
	fmt.Printf("listening on %s (%d-byte body)\n", ln.Addr(), len(body))
	log.Fatal(http.Serve(ln, h))
}
