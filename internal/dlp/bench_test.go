package dlp

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

// benchBody is a 64 KiB JSON page of orders as an API returns it: ids,
// names, addresses, timestamps, amounts, and now and then an e-mail address
// or a card number to mask.
func benchBody() []byte {
	var b bytes.Buffer
	b.WriteString(`{"orders":[`)
	for i := 0; b.Len() < 64<<10-600; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		email, card := `null`, `"**** 1111"`
		if i%5 == 0 {
			email = fmt.Sprintf(`"customer%d@example.com"`, i)
		}
		if i%17 == 0 {
			card = `"4111 1111 1111 1111"`
		}
		fmt.Fprintf(&b, `{"id":"ord_%08x","created":"2024-05-%02dT09:%02d:12Z","status":"shipped","customer":{"id":%d,"name":"Customer %d","email":%s,"address":{"street":"%d Long Street","city":"Springfield","zip":"%05d","country":"US"}},"payment":{"card":%s,"amount":%d.%02d,"currency":"USD"},"items":[{"sku":"W-%d","qty":%d,"price":19.99},{"sku":"G-%d","qty":1,"price":5.00}],"tags":["web","priority-%d"]}`,
			i*2654435761, i%28+1, i%60, 100000+i, i, email, i%900+1, i%99999, card, i%500, i%100, i%300, i%7+1, i%250, i%3)
	}
	b.WriteString(`],"next":null}`)
	return b.Bytes()
}

func benchPolicy(b *testing.B, paths bool) *Policy {
	c := Config{Mask: Builtins()}
	if paths {
		c.JSONPaths = []string{"$.orders[*].customer.address", "$..card"}
	}
	p, err := Compile(c)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkMask measures masking throughput over a 64 KiB JSON body with
// every built-in detector on: whole (as a held response is), streamed in
// 4 KiB reads, and with JSON paths too.
func BenchmarkMask(b *testing.B) {
	body := benchBody()
	b.Run("whole", func(b *testing.B) {
		p := benchPolicy(b, false)
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			p.Mask(JSON, body)
		}
	})
	b.Run("stream", func(b *testing.B) {
		p := benchPolicy(b, false)
		buf := make([]byte, 4<<10)
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			r := p.NewReader(bytes.NewReader(body), JSON, 1<<20, true)
			for {
				if _, err := r.Read(buf); err == io.EOF {
					break
				}
			}
		}
	})
	b.Run("paths", func(b *testing.B) {
		p := benchPolicy(b, true)
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			p.Mask(JSON, body)
		}
	})
}
