package limits

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

func TestGCRA(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewLocal(1000, nil)
		ctx := context.Background()
		r := Rate{Limit: 10, Per: time.Second} // one per 100 ms, burst 10
		for i := range 10 {
			res, _ := l.Allow(ctx, "k", r)
			if !res.Allowed || res.Remaining != 9-i {
				t.Fatalf("burst request %d: got %+v, want allowed with %d remaining", i, res, 9-i)
			}
		}
		res, _ := l.Allow(ctx, "k", r)
		if res.Allowed || res.RetryAfter != 100*time.Millisecond {
			t.Fatalf("over burst: got %+v, want denied, retry after 100ms", res)
		}
		// A denied request does not consume: after 100 ms exactly one more.
		time.Sleep(100 * time.Millisecond)
		if res, _ := l.Allow(ctx, "k", r); !res.Allowed || res.Remaining != 0 {
			t.Fatalf("after one interval: got %+v, want allowed with 0 remaining", res)
		}
		if res, _ := l.Allow(ctx, "k", r); res.Allowed {
			t.Fatalf("second after one interval: got %+v, want denied", res)
		}
		// Idle refill: a full second restores the whole burst, no more.
		time.Sleep(5 * time.Second)
		n := 0
		for {
			res, _ := l.Allow(ctx, "k", r)
			if !res.Allowed {
				break
			}
			n++
		}
		if n != 10 {
			t.Fatalf("after idling: got %d allowed, want the burst of 10", n)
		}
		// Other keys are independent.
		if res, _ := l.Allow(ctx, "other", r); !res.Allowed {
			t.Fatal("another key was limited")
		}
	})
}

func TestGCRASteadyRateAndBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewLocal(1000, nil)
		ctx := context.Background()
		r := Rate{Limit: 100, Per: time.Minute, Burst: 5}
		allowed := 0
		// 10 requests a second for a minute: 100 per minute plus the burst.
		for range 600 {
			if res, _ := l.Allow(ctx, "k", r); res.Allowed {
				allowed++
			}
			time.Sleep(100 * time.Millisecond)
		}
		if allowed < 100 || allowed > 105 {
			t.Fatalf("got %d allowed in a minute, want 100 plus at most the burst of 5", allowed)
		}
		// Reset says when the bucket is full again.
		res, _ := l.Allow(ctx, "fresh", r)
		if res.Reset != 600*time.Millisecond || res.Remaining != 4 {
			t.Fatalf("fresh key: got %+v, want reset 600ms and 4 remaining", res)
		}
	})
}

func TestGCRAClockBoundary(t *testing.T) {
	// A window boundary is not special for GCRA: requests straddling a
	// whole second are still spaced by the interval.
	synctest.Test(t, func(t *testing.T) {
		l := NewLocal(1000, nil)
		ctx := context.Background()
		r := Rate{Limit: 2, Per: time.Second, Burst: 1}
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second - time.Millisecond)))
		if res, _ := l.Allow(ctx, "k", r); !res.Allowed {
			t.Fatal("first request denied")
		}
		time.Sleep(2 * time.Millisecond) // across the second boundary
		if res, _ := l.Allow(ctx, "k", r); res.Allowed {
			t.Fatal("a fixed-window limiter would allow this; GCRA must not")
		}
		time.Sleep(498 * time.Millisecond)
		if res, _ := l.Allow(ctx, "k", r); !res.Allowed {
			t.Fatal("after the interval: denied")
		}
	})
}

func TestLocalBoundedMemory(t *testing.T) {
	l := NewLocal(64*16, nil)
	r := Rate{Limit: 1, Per: time.Hour}
	for i := range 100000 {
		l.Allow(context.Background(), fmt.Sprint("key", i), r)
	}
	if n := l.Len(); n > 64*16 {
		t.Fatalf("got %d keys held, want at most %d", n, 64*16)
	}
}

func BenchmarkLocalAllow(b *testing.B) {
	l := NewLocal(100000, nil)
	r := Rate{Limit: 1_000_000, Per: time.Second}
	ctx := context.Background()
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("tenant/%d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Allow(ctx, keys[i&1023], r)
		i++
	}
}
