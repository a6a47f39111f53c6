package e2e

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// metric reads one unlabelled gauge from the admin /metrics.
func metric(t *testing.T, admin, name string) float64 {
	_, b, _ := do(t, "GET", admin+"/metrics", "", nil)
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("metric %s not found", name)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// TestSoak runs mixed allowed and denied load for ZTGATE_SOAK (for example
// 10m; ./scripts/soak sets it) and reports errors and the growth of
// goroutines and memory. Without ZTGATE_SOAK it does not run.
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("ZTGATE_SOAK"))
	if err != nil || d <= 0 {
		t.Skip("set ZTGATE_SOAK=10m (./scripts/soak) to run the soak test")
	}
	is, up := newIssuer(t), newUpstream(t)
	g := startGatewayIn(t, t.TempDir(), baseConfig(is, up)+"store: { driver: sqlite, dsn: soak.db }\n")
	reader := is.TokenFor(t, "alice", "Orders.Read")
	g0, m0 := metric(t, g.Admin, "go_goroutines"), metric(t, g.Admin, "process_resident_memory_bytes")
	var wrong, total atomic.Int64
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	cases := []struct {
		path, token string
		want        int
	}{{"/orders/1", reader, 200}, {"/admin/x", reader, 403}, {"/orders/2", "", 401}, {"/nowhere", reader, 404}}
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; time.Now().Before(stop); j++ {
				c := cases[(i+j)%len(cases)]
				s, _, _, err := tryDo("GET", g.URL+c.path, c.token)
				total.Add(1)
				if err != nil || s != c.want {
					wrong.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	time.Sleep(2 * time.Second) // idle connections settle
	g1, m1 := metric(t, g.Admin, "go_goroutines"), metric(t, g.Admin, "process_resident_memory_bytes")
	fmt.Printf("soak: %v, %d requests, %d wrong answers; goroutines %.0f -> %.0f; RSS %.1f MB -> %.1f MB\n",
		d, total.Load(), wrong.Load(), g0, g1, m0/1e6, m1/1e6)
	if wrong.Load() > 0 {
		t.Errorf("%d wrong answers", wrong.Load())
	}
	if g1 > g0+50 {
		t.Errorf("goroutines grew from %.0f to %.0f", g0, g1)
	}
}
