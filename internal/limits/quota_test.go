package limits

import (
	"context"
	"testing"
	"time"
)

func TestLocalQuotas(t *testing.T) {
	now := time.Date(2026, 11, 30, 23, 59, 0, 0, time.UTC)
	q := NewLocalQuotas(100, func() time.Time { return now })
	ctx := context.Background()
	calls := Quota{Calls: 3, Period: Day}
	for i := range 3 {
		res, _ := q.Admit(ctx, "k", calls)
		if !res.Allowed || res.Remaining != int64(2-i) || res.Reset != time.Minute {
			t.Fatalf("call %d: got %+v", i, res)
		}
	}
	if res, _ := q.Admit(ctx, "k", calls); res.Allowed || res.Remaining != 0 {
		t.Fatalf("fourth call: got %+v, want refused", res)
	}
	now = now.Add(2 * time.Minute) // a new day
	if res, _ := q.Admit(ctx, "k", calls); !res.Allowed {
		t.Fatalf("new day: got %+v, want allowed", res)
	}
	// Bytes: the call that crosses the quota passes; the next is refused.
	bytes := Quota{Bytes: 1000, Period: Month}
	if res, _ := q.Admit(ctx, "b", bytes); !res.Allowed || res.Remaining != -1 {
		t.Fatalf("bytes quota: got %+v", res)
	}
	q.AddBytes(ctx, "b", bytes, 1500)
	if res, _ := q.Admit(ctx, "b", bytes); res.Allowed {
		t.Fatal("bytes spent: call allowed")
	}
	now = time.Date(2026, 12, 31, 12, 0, 0, 0, time.UTC)
	if _, end := Month.Bounds(now); !end.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("month end: got %v", end)
	}
}
