// Package store keeps ztgate's durable state behind one small interface:
// SQLite (embedded, the default) now, PostgreSQL next, with versioned
// migrations.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, without cgo

	"github.com/ztgate/ztgate/internal/audit"
)

// SQLite is the embedded store.
type SQLite struct {
	db *sql.DB
}

var _ audit.Sink = (*SQLite)(nil)

// migrations are applied in order; the schema_version table remembers how
// far a database has come. Append, never edit.
var migrations = []string{
	`CREATE TABLE audit_events (
		node       TEXT    NOT NULL,
		seq        INTEGER NOT NULL,
		time_ns    INTEGER NOT NULL,
		request_id TEXT    NOT NULL,
		decision   TEXT    NOT NULL,
		service    TEXT    NOT NULL,
		route      TEXT    NOT NULL,
		identity   TEXT    NOT NULL,
		status     INTEGER NOT NULL,
		body       TEXT    NOT NULL,
		prev_hash  TEXT    NOT NULL,
		hash       TEXT    NOT NULL,
		PRIMARY KEY (node, seq)
	);
	CREATE INDEX audit_events_time ON audit_events (time_ns);
	CREATE INDEX audit_events_decision ON audit_events (decision, time_ns);`,
	`CREATE TABLE quotas (
		key    TEXT    NOT NULL,
		period INTEGER NOT NULL, -- unix seconds of the period's start
		calls  INTEGER NOT NULL DEFAULT 0,
		bytes  INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (key, period)
	);`,
	`CREATE TABLE alerts (
		id       INTEGER PRIMARY KEY AUTOINCREMENT,
		time_ns  INTEGER NOT NULL,
		severity TEXT    NOT NULL,
		rule     TEXT    NOT NULL,
		summary  TEXT    NOT NULL,
		identity TEXT    NOT NULL,
		evidence TEXT    NOT NULL, -- JSON list of audit request ids
		node     TEXT    NOT NULL
	);
	CREATE INDEX alerts_time ON alerts (time_ns);`,
}

// OpenSQLite opens (creating if needed) the database at dsn, a path or a
// file: URI, in WAL mode, and migrates it.
func OpenSQLite(ctx context.Context, dsn string) (*SQLite, error) {
	if !strings.HasPrefix(dsn, "file:") {
		dsn = "file:" + dsn
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	// WAL with synchronous=NORMAL: a commit survives the process being
	// killed; busy_timeout lets several processes share the file.
	dsn += sep + "_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(5000)&_pragma=foreign_keys(ON)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(4)
	s := &SQLite{db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *SQLite) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var v int
	err := s.db.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := s.db.ExecContext(ctx, `INSERT INTO schema_version VALUES (0)`); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("migrate: the database is at version %d, newer than this ztgate (%d)", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate to version %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, i+1); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the database.
func (s *SQLite) Close() error { return s.db.Close() }

// Append writes records in one transaction.
func (s *SQLite) Append(ctx context.Context, recs []audit.Record) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO audit_events
		(node, seq, time_ns, request_id, decision, service, route, identity, status, body, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, r := range recs {
		e := &r.Event
		if _, err := stmt.ExecContext(ctx, r.Node, r.Seq, e.Time.UnixNano(), e.RequestID, e.Decision, e.Service, e.Route, e.Identity, e.Status, string(r.Body), r.PrevHash, r.Hash); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Last returns the end of node's chain (0, "" when empty).
func (s *SQLite) Last(ctx context.Context, node string) (int64, string, error) {
	var seq int64
	var h string
	err := s.db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_events WHERE node = ? ORDER BY seq DESC LIMIT 1`, node).Scan(&seq, &h)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", nil
	}
	return seq, h, err
}

// Filter selects audit events.
type Filter struct {
	Since    time.Time
	Decision string
	Identity string
	Route    string // service/route or route
	After    string // cursor: "node:seq" of the last event seen
	Limit    int
}

// Query returns matching events, newest first, and the cursor for the next
// page ("" when there is none).
func (s *SQLite) Query(ctx context.Context, f Filter) ([]audit.Record, string, error) {
	q := `SELECT node, seq, body, prev_hash, hash FROM audit_events WHERE time_ns >= ?`
	args := []any{f.Since.UnixNano()}
	if f.Decision != "" {
		q += ` AND decision = ?`
		args = append(args, f.Decision)
	}
	if f.Identity != "" {
		q += ` AND identity = ?`
		args = append(args, f.Identity)
	}
	if f.Route != "" {
		if svc, rt, ok := strings.Cut(f.Route, "/"); ok {
			q += ` AND service = ? AND route = ?`
			args = append(args, svc, rt)
		} else {
			q += ` AND route = ?`
			args = append(args, f.Route)
		}
	}
	if f.After != "" {
		var node string
		var seq int64
		if _, err := fmt.Sscanf(strings.Replace(f.After, ":", " ", 1), "%s %d", &node, &seq); err != nil {
			return nil, "", fmt.Errorf("bad cursor %q", f.After)
		}
		q += ` AND (time_ns, node, seq) < (SELECT time_ns, node, seq FROM audit_events WHERE node = ? AND seq = ?)`
		args = append(args, node, seq)
	}
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	q += ` ORDER BY time_ns DESC, node DESC, seq DESC LIMIT ?`
	args = append(args, limit+1)
	recs, err := s.scan(ctx, q, args...)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(recs) > limit {
		recs = recs[:limit]
		last := recs[len(recs)-1]
		next = fmt.Sprintf("%s:%d", last.Node, last.Seq)
	}
	return recs, next, nil
}

// Chain returns every record of node in sequence order, for verification.
// Each record's Event holds the indexed columns as stored, so a check can
// compare them with the hashed body.
func (s *SQLite) Chain(ctx context.Context, node string) ([]audit.Record, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT node, seq, body, prev_hash, hash, time_ns, request_id, decision, service, route, identity, status
		FROM audit_events WHERE node = ? ORDER BY seq`, node)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []audit.Record
	for rows.Next() {
		var r audit.Record
		var body string
		var ns int64
		e := &r.Event
		if err := rows.Scan(&r.Node, &r.Seq, &body, &r.PrevHash, &r.Hash, &ns, &e.RequestID, &e.Decision, &e.Service, &e.Route, &e.Identity, &e.Status); err != nil {
			return nil, err
		}
		r.Body = []byte(body)
		e.Time = time.Unix(0, ns).UTC()
		e.Node = r.Node
		out = append(out, r)
	}
	return out, rows.Err()
}

// Nodes lists the nodes with events.
func (s *SQLite) Nodes(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT node FROM audit_events ORDER BY node`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

func (s *SQLite) scan(ctx context.Context, q string, args ...any) ([]audit.Record, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []audit.Record
	for rows.Next() {
		var r audit.Record
		var body string
		if err := rows.Scan(&r.Node, &r.Seq, &body, &r.PrevHash, &r.Hash); err != nil {
			return nil, err
		}
		r.Body = []byte(body)
		out = append(out, r)
	}
	return out, rows.Err()
}

// Exec runs a statement (tests use it to tamper with records).
func (s *SQLite) Exec(ctx context.Context, q string, args ...any) error {
	_, err := s.db.ExecContext(ctx, q, args...)
	return err
}
