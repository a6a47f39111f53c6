package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/ztgate/ztgate/internal/alert"
)

var _ alert.Store = (*DB)(nil)

// AddAlert stores an alert.
func (s *DB) AddAlert(ctx context.Context, a alert.Alert) error {
	ev, _ := json.Marshal(a.Evidence)
	_, err := s.exec(ctx, `INSERT INTO alerts (time_ns, severity, rule, summary, identity, evidence, node) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		a.Time.UnixNano(), a.Severity, a.Rule, a.Summary, a.Identity, string(ev), a.Node)
	return err
}

// Alerts lists alerts since a time, newest first.
func (s *DB) Alerts(ctx context.Context, since time.Time, limit int) ([]alert.Alert, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rows, err := s.query(ctx, `SELECT id, time_ns, severity, rule, summary, identity, evidence, node FROM alerts WHERE time_ns >= ? ORDER BY time_ns DESC, id DESC LIMIT ?`, since.UnixNano(), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []alert.Alert
	for rows.Next() {
		var a alert.Alert
		var ns int64
		var ev string
		if err := rows.Scan(&a.ID, &ns, &a.Severity, &a.Rule, &a.Summary, &a.Identity, &ev, &a.Node); err != nil {
			return nil, err
		}
		a.Time = time.Unix(0, ns).UTC()
		_ = json.Unmarshal([]byte(ev), &a.Evidence)
		out = append(out, a)
	}
	return out, rows.Err()
}
