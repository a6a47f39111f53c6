package store

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/ztgate/ztgate/internal/limits"
)

// Quotas keeps quota counts in the store, so a single gateway keeps them
// across restarts.
type Quotas struct {
	s   *DB
	now func() time.Time
}

// Quotas returns the store's quota counter.
func (s *DB) Quotas() *Quotas { return &Quotas{s: s, now: time.Now} }

var _ limits.QuotaStore = (*Quotas)(nil)

// Admit counts one call unless the quota is spent.
func (q *Quotas) Admit(ctx context.Context, key string, quota limits.Quota) (limits.QuotaResult, error) {
	now := q.now()
	start, end := quota.Period.Bounds(now)
	res := limits.QuotaResult{Reset: end.Sub(now), Remaining: -1}
	db := q.s
	if _, err := db.exec(ctx, `INSERT INTO quotas (key, period) VALUES (?, ?) ON CONFLICT DO NOTHING`, key, start.Unix()); err != nil {
		return res, errors.Join(limits.ErrQuotaStore, err)
	}
	var calls int64
	err := db.queryRow(ctx, `UPDATE quotas SET calls = calls + 1
		WHERE key = ? AND period = ? AND (? = 0 OR calls < ?) AND (? = 0 OR bytes < ?)
		RETURNING calls`, key, start.Unix(), quota.Calls, quota.Calls, quota.Bytes, quota.Bytes).Scan(&calls)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if quota.Calls > 0 {
			res.Remaining = 0
		}
		return res, nil
	case err != nil:
		return res, errors.Join(limits.ErrQuotaStore, err)
	}
	res.Allowed = true
	if quota.Calls > 0 {
		res.Remaining = quota.Calls - calls
	}
	return res, nil
}

// AddBytes counts response bytes.
func (q *Quotas) AddBytes(ctx context.Context, key string, quota limits.Quota, n int64) error {
	start, _ := quota.Period.Bounds(q.now())
	_, err := q.s.exec(ctx, `INSERT INTO quotas (key, period, bytes) VALUES (?, ?, ?)
		ON CONFLICT (key, period) DO UPDATE SET bytes = quotas.bytes + excluded.bytes`, key, start.Unix(), n)
	if err != nil {
		return errors.Join(limits.ErrQuotaStore, err)
	}
	return nil
}
