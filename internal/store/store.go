// Package store keeps ztgate's durable state behind one small interface:
// SQLite (embedded, the default) or PostgreSQL, with versioned migrations.
// Both speak through database/sql with the same statements, written with ?
// placeholders; PostgreSQL's are rewritten to $n once, when prepared.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	_ "modernc.org/sqlite"             // the "sqlite" database/sql driver, without cgo

	"github.com/ztgate/ztgate/internal/audit"
)

// Dialect names a database.
type Dialect string

// The supported databases.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// DB is the store: SQLite or PostgreSQL.
type DB struct {
	db      *sql.DB
	dialect Dialect

	mu    sync.Mutex
	rebnd map[string]string // ?-statements rewritten for PostgreSQL

	insMu sync.Mutex
	ins   map[int]*sql.Stmt // prepared INSERTs of n audit records
}

var _ audit.Sink = (*DB)(nil)

// migrations are applied in order; the schema_version table remembers how
// far a database has come. Append, never edit; each dialect has the same
// number of steps, and step i means the same in both.
var migrations = map[Dialect][]string{
	SQLite: {
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
		checkpointsTable("INTEGER"),
		dropDecisionIndex,
		apiKeysTables("INTEGER"),
		assessmentsTable("INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER"),
	},
	// The body column is TEXT, not JSONB: the chain hashes its exact bytes.
	Postgres: {
		`CREATE TABLE audit_events (
		node       TEXT    NOT NULL,
		seq        BIGINT  NOT NULL,
		time_ns    BIGINT  NOT NULL,
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
		key    TEXT   NOT NULL,
		period BIGINT NOT NULL, -- unix seconds of the period's start
		calls  BIGINT NOT NULL DEFAULT 0,
		bytes  BIGINT NOT NULL DEFAULT 0,
		PRIMARY KEY (key, period)
	);`,
		`CREATE TABLE alerts (
		id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		time_ns  BIGINT NOT NULL,
		severity TEXT   NOT NULL,
		rule     TEXT   NOT NULL,
		summary  TEXT   NOT NULL,
		identity TEXT   NOT NULL,
		evidence TEXT   NOT NULL, -- JSON list of audit request ids
		node     TEXT   NOT NULL
	);
	CREATE INDEX alerts_time ON alerts (time_ns);`,
		checkpointsTable("BIGINT"),
		dropDecisionIndex,
		apiKeysTables("BIGINT"),
		assessmentsTable("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "BIGINT"),
	},
}

// dropDecisionIndex: every index is written on every insert, and audit
// inserts are on the request path. Queries by decision are bounded by time
// and use the time index.
const dropDecisionIndex = `DROP INDEX IF EXISTS audit_events_decision;`

// checkpointsTable remembers, per node, the last record removed by
// retention: verification starts from it. mac binds it to the chain's key.
func checkpointsTable(integer string) string {
	return `CREATE TABLE audit_checkpoints (
		node    TEXT PRIMARY KEY,
		seq     ` + integer + ` NOT NULL,
		hash    TEXT NOT NULL,
		mac     TEXT NOT NULL,
		time_ns ` + integer + ` NOT NULL
	);`
}

// apiKeysTables holds API keys (their hashes, never the keys) and the
// counter that orders their changes: a creation or revocation takes the
// next version under the counter row's lock and stamps it on the key in the
// same transaction, so versions commit in order and a gateway polling
// "rev > what I have seen" never skips one.
func apiKeysTables(integer string) string {
	return `CREATE TABLE api_keys (
		id           TEXT PRIMARY KEY,
		name         TEXT NOT NULL,
		hash         TEXT NOT NULL, -- hex SHA-256 of the key
		service      TEXT NOT NULL,
		roles        TEXT NOT NULL, -- JSON list
		scopes       TEXT NOT NULL, -- JSON list
		created_ns   ` + integer + ` NOT NULL,
		created_by   TEXT NOT NULL,
		expires_ns   ` + integer + ` NOT NULL,
		revoked_ns   ` + integer + ` NOT NULL DEFAULT 0,
		last_used_ns ` + integer + ` NOT NULL DEFAULT 0,
		rev          ` + integer + ` NOT NULL
	);
	CREATE INDEX api_keys_rev ON api_keys (rev);
	CREATE TABLE api_key_version (version ` + integer + ` NOT NULL);
	INSERT INTO api_key_version (version) VALUES (0);`
}

// Open opens the store of the given driver ("sqlite" or "postgres").
func Open(ctx context.Context, driver, dsn string) (*DB, error) {
	switch Dialect(driver) {
	case SQLite, "":
		return OpenSQLite(ctx, dsn)
	case Postgres:
		return OpenPostgres(ctx, dsn)
	}
	return nil, fmt.Errorf("unknown store driver %q", driver)
}

// OpenSQLite opens (creating if needed) the database at dsn, a path or a
// file: URI, in WAL mode, and migrates it.
func OpenSQLite(ctx context.Context, dsn string) (*DB, error) {
	if !strings.HasPrefix(dsn, "file:") {
		dsn = "file:" + dsn
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	// WAL with synchronous=NORMAL: a commit survives the process being
	// killed; busy_timeout lets several processes share the file.
	dsn += sep + "_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=wal_autocheckpoint(8000)&_pragma=cache_size(-512)&_pragma=busy_timeout(5000)&_pragma=foreign_keys(ON)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(4)
	return open(ctx, db, SQLite)
}

// OpenPostgres connects to the PostgreSQL database at dsn (a postgres://
// URL or key=value string) and migrates it. Several gateway nodes may share
// the database; migrations take an advisory lock.
func OpenPostgres(ctx context.Context, dsn string) (*DB, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return open(ctx, db, Postgres)
}

func open(ctx context.Context, db *sql.DB, d Dialect) (*DB, error) {
	s := &DB{db: db, dialect: d, rebnd: map[string]string{}}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Dialect reports which database the store is.
func (s *DB) Dialect() Dialect { return s.dialect }

// q returns the statement for this dialect: PostgreSQL wants $1, $2, ...
// where SQLite takes ?. Statements never hold a literal ?.
func (s *DB) q(stmt string) string {
	if s.dialect != Postgres {
		return stmt
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.rebnd[stmt]; ok {
		return r
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(stmt); i++ {
		if stmt[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(stmt[i])
	}
	r := b.String()
	if len(s.rebnd) < 1024 { // statements built per call (Append batches) are not all kept
		s.rebnd[stmt] = r
	}
	return r
}

func (s *DB) exec(ctx context.Context, stmt string, args ...any) (sql.Result, error) {
	return s.db.ExecContext(ctx, s.q(stmt), args...)
}

func (s *DB) query(ctx context.Context, stmt string, args ...any) (*sql.Rows, error) {
	return s.db.QueryContext(ctx, s.q(stmt), args...)
}

func (s *DB) queryRow(ctx context.Context, stmt string, args ...any) *sql.Row {
	return s.db.QueryRowContext(ctx, s.q(stmt), args...)
}

func (s *DB) migrate(ctx context.Context) error {
	steps := migrations[s.dialect]
	// Up to date (the common case: a command opening a gateway's store):
	// nothing to write, so no write lock to wait for. A SQLite transaction
	// that reads and then writes fails at once (SQLITE_BUSY) when another
	// process, a running gateway, wrote in between.
	var v int
	if err := s.db.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); err == nil && v == len(steps) {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	if s.dialect == Postgres {
		// One node migrates at a time; the others wait and find it done.
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7215470001)`); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	v = 0
	err = tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version VALUES (0)`); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if v > len(steps) {
		return fmt.Errorf("migrate: the database is at version %d, newer than this ztgate (%d)", v, len(steps))
	}
	for i := v; i < len(steps); i++ {
		if _, err := tx.ExecContext(ctx, steps[i]); err != nil {
			return fmt.Errorf("migrate to version %d: %w", i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE schema_version SET version = ?`), len(steps)); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return tx.Commit()
}

// Close closes the database.
func (s *DB) Close() error {
	s.insMu.Lock()
	for _, st := range s.ins {
		st.Close()
	}
	s.ins = nil
	s.insMu.Unlock()
	return s.db.Close()
}

// insertChunk is the most records one INSERT carries. Append prepares one
// statement per chunk size and reuses it, so a steady stream of batches
// costs no SQL parsing.
const insertChunk = 64

// chunkLen is the size of the next INSERT for n records. In SQLite it is
// the largest power of two up to insertChunk that is at most n: seven
// prepared statements per connection, since a statement for every size
// from 1 to 64 would cost the embedded SQLite about 4 MB of the gateway's
// memory per connection. In PostgreSQL the statements live in the server
// and each INSERT is a round trip, so a batch takes as few as it can.
func (s *DB) chunkLen(n int) int {
	if s.dialect == Postgres {
		return min(n, insertChunk)
	}
	c := insertChunk
	for c > n {
		c >>= 1
	}
	return c
}

// Append writes records atomically, as multi-row inserts of prepared
// statements: a batch that one statement carries is atomic on its own,
// a larger one is a transaction of several.
func (s *DB) Append(ctx context.Context, recs []audit.Record) error {
	if len(recs) == 0 {
		return nil
	}
	if s.chunkLen(len(recs)) == len(recs) {
		st, err := s.insert(ctx, len(recs))
		if err != nil {
			return err
		}
		_, err = st.ExecContext(ctx, insertArgs(recs)...)
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for start := 0; start < len(recs); {
		part := recs[start : start+s.chunkLen(len(recs)-start)]
		start += len(part)
		st, err := s.insert(ctx, len(part))
		if err != nil {
			return err
		}
		if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, insertArgs(part)...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func insertArgs(recs []audit.Record) []any {
	args := make([]any, 0, 12*len(recs))
	for i := range recs {
		r := &recs[i]
		e := &r.Event
		args = append(args, r.Node, r.Seq, e.Time.UnixNano(), e.RequestID, e.Decision, e.Service, e.Route, e.Identity, e.Status, r.Body, r.PrevHash, r.Hash)
	}
	return args
}

// insert returns the prepared INSERT of n records.
func (s *DB) insert(ctx context.Context, n int) (*sql.Stmt, error) {
	s.insMu.Lock()
	defer s.insMu.Unlock()
	if st := s.ins[n]; st != nil {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, s.insertStmt(n))
	if err != nil {
		return nil, err
	}
	if s.ins == nil {
		s.ins = make(map[int]*sql.Stmt)
	}
	s.ins[n] = st
	return st, nil
}

// insertStmt is the INSERT of n audit records, in this dialect.
func (s *DB) insertStmt(n int) string {
	var b strings.Builder
	b.Grow(160 + n*40)
	b.WriteString(`INSERT INTO audit_events (node, seq, time_ns, request_id, decision, service, route, identity, status, body, prev_hash, hash) VALUES `)
	p := 0
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for c := range 12 {
			if c > 0 {
				b.WriteByte(',')
			}
			p++
			if s.dialect == Postgres {
				b.WriteByte('$')
				b.WriteString(strconv.Itoa(p))
			} else {
				b.WriteByte('?')
			}
		}
		b.WriteByte(')')
	}
	return b.String()
}

// Last returns the end of node's chain (0, "" when empty).
func (s *DB) Last(ctx context.Context, node string) (int64, string, error) {
	var seq int64
	var h string
	err := s.queryRow(ctx, `SELECT seq, hash FROM audit_events WHERE node = ? ORDER BY seq DESC LIMIT 1`, node).Scan(&seq, &h)
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
func (s *DB) Query(ctx context.Context, f Filter) ([]audit.Record, string, error) {
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
func (s *DB) Chain(ctx context.Context, node string) ([]audit.Record, error) {
	rows, err := s.query(ctx, `SELECT node, seq, body, prev_hash, hash, time_ns, request_id, decision, service, route, identity, status
		FROM audit_events WHERE node = ? ORDER BY seq`, node)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []audit.Record
	for rows.Next() {
		var r audit.Record
		var ns int64
		e := &r.Event
		if err := rows.Scan(&r.Node, &r.Seq, &r.Body, &r.PrevHash, &r.Hash, &ns, &e.RequestID, &e.Decision, &e.Service, &e.Route, &e.Identity, &e.Status); err != nil {
			return nil, err
		}
		e.Time = time.Unix(0, ns).UTC()
		e.Node = r.Node
		out = append(out, r)
	}
	return out, rows.Err()
}

// Nodes lists the nodes with events.
func (s *DB) Nodes(ctx context.Context) ([]string, error) {
	rows, err := s.query(ctx, `SELECT DISTINCT node FROM audit_events ORDER BY node`)
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

func (s *DB) scan(ctx context.Context, q string, args ...any) ([]audit.Record, error) {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []audit.Record
	for rows.Next() {
		var r audit.Record
		if err := rows.Scan(&r.Node, &r.Seq, &r.Body, &r.PrevHash, &r.Hash); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Exec runs a statement (tests use it to tamper with records).
func (s *DB) Exec(ctx context.Context, q string, args ...any) error {
	_, err := s.exec(ctx, q, args...)
	return err
}

// Checkpoint is where a node's chain starts after retention removed its
// older records: the last removed record's sequence and hash.
type Checkpoint struct {
	Seq  int64
	Hash string
	MAC  string
	Time time.Time // when the records were removed
}

// Checkpoint returns node's checkpoint (nil when nothing was pruned).
func (s *DB) Checkpoint(ctx context.Context, node string) (*Checkpoint, error) {
	var c Checkpoint
	var ns int64
	err := s.queryRow(ctx, `SELECT seq, hash, mac, time_ns FROM audit_checkpoints WHERE node = ?`, node).Scan(&c.Seq, &c.Hash, &c.MAC, &ns)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	c.Time = time.Unix(0, ns).UTC()
	return &c, nil
}

// Prune removes every node's records older than before, keeping each
// chain's newest record, and moves the node's checkpoint to the last record
// removed, in the same transaction. Records are removed in sequence order
// only: a record stays while an older-sequence one is too young (events are
// timed at the request's start, so the two orders can differ slightly).
// mac signs a checkpoint (the chain's key binds it). It returns the number
// of records removed.
func (s *DB) Prune(ctx context.Context, before time.Time, mac func(node string, seq int64, hash string) string) (int64, error) {
	nodes, err := s.Nodes(ctx)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, node := range nodes {
		n, err := s.pruneNode(ctx, node, before, mac)
		if err != nil {
			return total, fmt.Errorf("prune node %s: %w", node, err)
		}
		total += n
	}
	return total, nil
}

func (s *DB) pruneNode(ctx context.Context, node string, before time.Time, mac func(string, int64, string) string) (int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var maxSeq int64
	var young sql.NullInt64
	if err := tx.QueryRowContext(ctx, s.q(`SELECT COALESCE(MAX(seq), 0) FROM audit_events WHERE node = ?`), node).Scan(&maxSeq); err != nil {
		return 0, err
	}
	if err := tx.QueryRowContext(ctx, s.q(`SELECT MIN(seq) FROM audit_events WHERE node = ? AND time_ns >= ?`), node, before.UnixNano()).Scan(&young); err != nil {
		return 0, err
	}
	cut := maxSeq - 1 // the newest record always stays: the chain continues from it
	if young.Valid {
		cut = min(cut, young.Int64-1)
	}
	var hash string
	err = tx.QueryRowContext(ctx, s.q(`SELECT hash FROM audit_events WHERE node = ? AND seq = ?`), node, cut).Scan(&hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil // nothing old enough, or already pruned up to cut
	}
	if err != nil {
		return 0, err
	}
	res, err := tx.ExecContext(ctx, s.q(`DELETE FROM audit_events WHERE node = ? AND seq <= ?`), node, cut)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO audit_checkpoints (node, seq, hash, mac, time_ns) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (node) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac, time_ns = excluded.time_ns`),
		node, cut, hash, mac(node, cut, hash), time.Now().UnixNano()); err != nil {
		return 0, err
	}
	return n, tx.Commit()
}
