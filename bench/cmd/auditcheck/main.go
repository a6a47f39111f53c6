// Command auditcheck reads the two sides of the benchmark's audit
// completeness check: the requests a running ztgate has answered (the sum
// of ztgate_requests_total on its admin /metrics), or the audit events in
// its SQLite store once it has stopped.
//
//	auditcheck -metrics http://127.0.0.1:9090/metrics   # prints answered=N
//	auditcheck -db audit.db                              # prints rows=N
package main

import (
	"bufio"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"net/http"
	"strconv"
	"strings"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, as ztgate's store uses
)

func main() {
	metrics := flag.String("metrics", "", "admin metrics URL: print the requests answered")
	db := flag.String("db", "", "SQLite audit store: print the events it holds")
	flag.Parse()
	switch {
	case *metrics != "":
		n, err := answered(*metrics)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("answered=%d\n", n)
	case *db != "":
		n, err := rows(*db)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("rows=%d\n", n)
	default:
		log.Fatal("usage: auditcheck -metrics URL | -db FILE")
	}
}

// answered sums every series of ztgate_requests_total.
func answered(url string) (int64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var total int64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "ztgate_requests_total{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("metrics line %q: %w", line, err)
		}
		total += int64(v)
	}
	return total, sc.Err()
}

func rows(file string) (int64, error) {
	db, err := sql.Open("sqlite", "file:"+file+"?mode=ro")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int64
	err = db.QueryRow(`SELECT count(*) FROM audit_events`).Scan(&n)
	return n, err
}
