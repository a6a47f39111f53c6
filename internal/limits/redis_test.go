package limits

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startRedis runs a real redis-server on loopback for the test (the test
// script installs the Debian package).
func startRedis(tb testing.TB) *redis.Client {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Fatal("redis-server not found: ./scripts/test installs it")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	tb.Cleanup(func() { c.Close() })
	for range 100 {
		if c.Ping(context.Background()).Err() == nil {
			return c
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatal("redis did not start")
	return nil
}

func TestRedisSharedBetweenInstances(t *testing.T) {
	c := startRedis(t)
	a := NewRedis(c, "t:", NewLocal(1024, nil), nil)
	b := NewRedis(c, "t:", NewLocal(1024, nil), nil)
	r := Rate{Limit: 5, Per: time.Minute}
	allowed := 0
	for i := range 20 {
		l := a
		if i%2 == 1 {
			l = b
		}
		res, err := l.Allow(context.Background(), "k", r)
		if err != nil {
			t.Fatal(err)
		}
		if res.Allowed {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("got %d allowed across two instances, want the shared 5", allowed)
	}
}

// BenchmarkRedisAllow measures one shared-limit decision against a real
// Redis on loopback and reports the latency percentiles it adds.
func BenchmarkRedisAllow(b *testing.B) {
	c := startRedis(b)
	l := NewRedis(c, "b:", NewLocal(1024, nil), nil)
	r := Rate{Limit: 1_000_000, Per: time.Second}
	ctx := context.Background()
	lat := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		if _, err := l.Allow(ctx, "k", r); err != nil {
			b.Fatal(err)
		}
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(start))
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
