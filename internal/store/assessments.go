package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ztgate/ztgate/internal/audit"
)

// assessmentsTable keeps the results of maturity assessments, for the
// trend a report shows: the stage per pillar and each check's outcome.
func assessmentsTable(id, integer string) string {
	return `CREATE TABLE assessments (
		id          ` + id + `,
		time_ns     ` + integer + ` NOT NULL,
		config      TEXT NOT NULL, -- the configuration file assessed
		config_hash TEXT NOT NULL,
		overall     TEXT NOT NULL,
		stages      TEXT NOT NULL, -- JSON: pillar -> stage
		outcomes    TEXT NOT NULL  -- JSON: check id -> outcome
	);
	CREATE INDEX assessments_time ON assessments (time_ns);`
}

// Assessment is one stored assessment result.
type Assessment struct {
	ID         int64             `json:"id"`
	Time       time.Time         `json:"time"`
	Config     string            `json:"config"`
	ConfigHash string            `json:"config_hash"`
	Overall    string            `json:"overall"`
	Stages     map[string]string `json:"stages"`
	Outcomes   map[string]string `json:"outcomes"`
}

// AddAssessment stores an assessment result.
func (s *DB) AddAssessment(ctx context.Context, a Assessment) error {
	stages, err := json.Marshal(a.Stages)
	if err != nil {
		return err
	}
	outcomes, err := json.Marshal(a.Outcomes)
	if err != nil {
		return err
	}
	_, err = s.exec(ctx, `INSERT INTO assessments (time_ns, config, config_hash, overall, stages, outcomes) VALUES (?, ?, ?, ?, ?, ?)`,
		a.Time.UnixNano(), a.Config, a.ConfigHash, a.Overall, string(stages), string(outcomes))
	return err
}

// Assessments lists stored assessment results taken before a time, newest
// first.
func (s *DB) Assessments(ctx context.Context, before time.Time, limit int) ([]Assessment, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rows, err := s.query(ctx, `SELECT id, time_ns, config, config_hash, overall, stages, outcomes FROM assessments
		WHERE time_ns < ? ORDER BY time_ns DESC, id DESC LIMIT ?`, before.UnixNano(), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Assessment
	for rows.Next() {
		var a Assessment
		var ns int64
		var stages, outcomes string
		if err := rows.Scan(&a.ID, &ns, &a.Config, &a.ConfigHash, &a.Overall, &stages, &outcomes); err != nil {
			return nil, err
		}
		a.Time = time.Unix(0, ns).UTC()
		if err := json.Unmarshal([]byte(stages), &a.Stages); err != nil {
			return nil, fmt.Errorf("assessment %d: stages: %w", a.ID, err)
		}
		if err := json.Unmarshal([]byte(outcomes), &a.Outcomes); err != nil {
			return nil, fmt.Errorf("assessment %d: outcomes: %w", a.ID, err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// EachEvent calls fn for each audit event since a time, newest first, at
// most limit of them (100 when limit is not positive), decoding each from
// its hashed body. It streams: memory does not grow with the window.
func (s *DB) EachEvent(ctx context.Context, since time.Time, limit int, fn func(*audit.Event) error) error {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.query(ctx, `SELECT body FROM audit_events WHERE time_ns >= ? ORDER BY time_ns DESC LIMIT ?`, since.UnixNano(), limit)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			return err
		}
		var e audit.Event
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			return fmt.Errorf("audit event: %w", err)
		}
		if err := fn(&e); err != nil {
			return err
		}
	}
	return rows.Err()
}
