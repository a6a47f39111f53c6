package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ztgate/ztgate/internal/apikey"
)

// ErrNotFound is returned for an API key id the store does not hold.
var ErrNotFound = apikey.ErrNotFound

const apiKeyCols = `id, name, hash, service, roles, scopes, created_ns, created_by, expires_ns, revoked_ns, last_used_ns, rev`

// nextAPIKeyVersion takes the next change version inside tx. The counter
// row stays locked until tx ends, so concurrent changes commit in version
// order.
func (s *DB) nextAPIKeyVersion(ctx context.Context, tx *sql.Tx) (int64, error) {
	var v int64
	err := tx.QueryRowContext(ctx, `UPDATE api_key_version SET version = version + 1 RETURNING version`).Scan(&v)
	return v, err
}

// CreateAPIKey stores a new key record and returns it with its version.
func (s *DB) CreateAPIKey(ctx context.Context, k apikey.Key) (apikey.Key, error) {
	roles, _ := json.Marshal(nonNil(k.Roles))
	scopes, _ := json.Marshal(nonNil(k.Scopes))
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return k, err
	}
	defer tx.Rollback()
	if k.Rev, err = s.nextAPIKeyVersion(ctx, tx); err != nil {
		return k, err
	}
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO api_keys (`+apiKeyCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		k.ID, k.Name, k.Hash, k.Service, string(roles), string(scopes), k.CreatedAt.UnixNano(), k.CreatedBy,
		k.ExpiresAt.UnixNano(), nanos(k.RevokedAt), nanos(k.LastUsed), k.Rev); err != nil {
		return k, err
	}
	return k, tx.Commit()
}

// DeleteAPIKey removes a key record. It is for a creation that cannot be
// completed (its audit event could not be written) and whose key was never
// shown; a key in use is revoked, never deleted.
func (s *DB) DeleteAPIKey(ctx context.Context, id string) error {
	_, err := s.exec(ctx, `DELETE FROM api_keys WHERE id = ?`, id)
	return err
}

// RevokeAPIKey marks a key revoked at at. It reports whether this call
// revoked it (false: it already was, and nothing changed).
func (s *DB) RevokeAPIKey(ctx context.Context, id string, at time.Time) (apikey.Key, bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return apikey.Key{}, false, err
	}
	defer tx.Rollback()
	// The version first: it locks the counter, so the key read below is
	// not revoked meanwhile by another node.
	rev, err := s.nextAPIKeyVersion(ctx, tx)
	if err != nil {
		return apikey.Key{}, false, err
	}
	k, err := scanAPIKey(tx.QueryRowContext(ctx, s.q(`SELECT `+apiKeyCols+` FROM api_keys WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return apikey.Key{}, false, ErrNotFound
	}
	if err != nil {
		return apikey.Key{}, false, err
	}
	if k.Revoked() {
		return k, false, nil // rolled back: the version is not spent
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE api_keys SET revoked_ns = ?, rev = ? WHERE id = ?`), at.UnixNano(), rev, id); err != nil {
		return apikey.Key{}, false, err
	}
	if err := tx.Commit(); err != nil {
		return apikey.Key{}, false, err
	}
	k.RevokedAt, k.Rev = time.Unix(0, at.UnixNano()).UTC(), rev
	return k, true, nil
}

// APIKey returns the key record with the id, or nil when there is none.
func (s *DB) APIKey(ctx context.Context, id string) (*apikey.Key, error) {
	k, err := scanAPIKey(s.queryRow(ctx, `SELECT `+apiKeyCols+` FROM api_keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &k, nil
}

// APIKeys lists every key record, newest first.
func (s *DB) APIKeys(ctx context.Context) ([]apikey.Key, error) {
	return s.apiKeys(ctx, `SELECT `+apiKeyCols+` FROM api_keys ORDER BY created_ns DESC, id`)
}

// APIKeyChanges returns the key records changed after version after (made
// or revoked), in version order, at most limit of them.
func (s *DB) APIKeyChanges(ctx context.Context, after int64, limit int) ([]apikey.Key, error) {
	return s.apiKeys(ctx, `SELECT `+apiKeyCols+` FROM api_keys WHERE rev > ? ORDER BY rev LIMIT ?`, after, limit)
}

// APIKeyVersion returns the version of the last change to any key.
func (s *DB) APIKeyVersion(ctx context.Context) (int64, error) {
	var v int64
	err := s.queryRow(ctx, `SELECT version FROM api_key_version`).Scan(&v)
	return v, err
}

// TouchAPIKeys records when keys were last used, in one transaction. A
// time never moves back, and the change version is left alone: use is not
// a change that gateways need to hear of.
func (s *DB) TouchAPIKeys(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	ids := make([]string, 0, len(used))
	for id := range used {
		ids = append(ids, id)
	}
	sort.Strings(ids) // one lock order for every node
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmt := s.q(`UPDATE api_keys SET last_used_ns = ? WHERE id = ? AND last_used_ns < ?`)
	for _, id := range ids {
		ns := used[id].UnixNano()
		if _, err := tx.ExecContext(ctx, stmt, ns, id, ns); err != nil {
			return fmt.Errorf("api key %s: %w", id, err)
		}
	}
	return tx.Commit()
}

func (s *DB) apiKeys(ctx context.Context, q string, args ...any) ([]apikey.Key, error) {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []apikey.Key
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

type scanner interface{ Scan(dest ...any) error }

func scanAPIKey(row scanner) (apikey.Key, error) {
	var k apikey.Key
	var roles, scopes string
	var created, expires, revoked, used int64
	if err := row.Scan(&k.ID, &k.Name, &k.Hash, &k.Service, &roles, &scopes, &created, &k.CreatedBy, &expires, &revoked, &used, &k.Rev); err != nil {
		return k, err
	}
	if err := json.Unmarshal([]byte(roles), &k.Roles); err != nil {
		return k, fmt.Errorf("api key %s: roles: %w", k.ID, err)
	}
	if err := json.Unmarshal([]byte(scopes), &k.Scopes); err != nil {
		return k, fmt.Errorf("api key %s: scopes: %w", k.ID, err)
	}
	k.Roles, k.Scopes = nonNil(k.Roles), nonNil(k.Scopes)
	k.CreatedAt, k.ExpiresAt = time.Unix(0, created).UTC(), time.Unix(0, expires).UTC()
	k.RevokedAt, k.LastUsed = fromNanos(revoked), fromNanos(used)
	return k, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// nanos is t in Unix nanoseconds, 0 for the zero time.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}
