package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// Spool is a local append-only file of chained records that the store could
// not take (audit.on_failure: buffer). Each batch is appended and fsynced
// before its requests are answered; the pipeline replays the spool into the
// store, in chain order, when the store is back, and only then empties it.
// A record already in the store (a replay cut short by a crash) is skipped
// on the next replay, by its sequence number.
type Spool struct {
	path string
	max  int64

	mu   sync.Mutex
	f    *os.File
	size int64
	n    int // records in the file
}

type spooled struct {
	Node     string `json:"node"`
	Seq      int64  `json:"seq"`
	Body     string `json:"body"` // the hashed bytes, exactly
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}

// ErrSpoolFull is returned when the spool would grow past its bound.
var ErrSpoolFull = errors.New("audit spool full")

// OpenSpool opens (creating) the spool file in dir, bounded to max bytes.
// Records left by an earlier run stay and are replayed.
func OpenSpool(dir string, max int64) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit spool: %w", err)
	}
	path := filepath.Join(dir, "audit-spool.jsonl")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit spool: %w", err)
	}
	s := &Spool{path: path, max: max, f: f}
	recs, good, err := s.readAll()
	if err != nil {
		f.Close()
		return nil, err
	}
	// A torn last line (the process died mid-append, before the fsync
	// that would have answered its requests) is cut off.
	if err := f.Truncate(good); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit spool: %w", err)
	}
	s.size, s.n = good, len(recs)
	return s, nil
}

// Path is the spool file.
func (s *Spool) Path() string { return s.path }

// Len is the number of records waiting.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// Append writes recs and fsyncs; on error nothing of recs counts as
// spooled.
func (s *Spool) Append(recs []Record) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, r := range recs {
		if err := enc.Encode(spooled{Node: r.Node, Seq: r.Seq, Body: r.Body, PrevHash: r.PrevHash, Hash: r.Hash}); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.size+int64(buf.Len()) > s.max {
		return fmt.Errorf("%w: %d bytes waiting, bound %d", ErrSpoolFull, s.size, s.max)
	}
	if _, err := s.f.Write(buf.Bytes()); err != nil {
		s.f.Truncate(s.size) // drop a partial write
		return fmt.Errorf("audit spool: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		s.f.Truncate(s.size)
		return fmt.Errorf("audit spool: %w", err)
	}
	s.size += int64(buf.Len())
	s.n += len(recs)
	return nil
}

// Records returns what is waiting, in order.
func (s *Spool) Records() ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	recs, _, err := s.readAll()
	return recs, err
}

// ReadFrom returns up to max records starting at byte offset off, and the
// offset after them.
func (s *Spool) ReadFrom(off int64, max int) ([]Record, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off >= s.size {
		return nil, off, nil
	}
	r := bufio.NewReaderSize(io.NewSectionReader(s.f, off, s.size-off), 64<<10)
	var recs []Record
	for len(recs) < max {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, off, fmt.Errorf("audit spool: %w", err)
		}
		rec, err := s.parse(line, off)
		if err != nil {
			return nil, off, err
		}
		recs = append(recs, rec)
		off += int64(len(line))
	}
	return recs, off, nil
}

func (s *Spool) parse(line []byte, off int64) (Record, error) {
	var sp spooled
	if err := json.Unmarshal(line, &sp); err != nil {
		return Record{}, fmt.Errorf("audit spool %s: record at byte %d unreadable: %w", s.path, off, err)
	}
	rec := Record{Node: sp.Node, Seq: sp.Seq, Body: sp.Body, PrevHash: sp.PrevHash, Hash: sp.Hash}
	if err := json.Unmarshal([]byte(sp.Body), &rec.Event); err != nil {
		return Record{}, fmt.Errorf("audit spool %s: event at byte %d unreadable: %w", s.path, off, err)
	}
	return rec, nil
}

// Clear empties the spool once its records are in the store.
func (s *Spool) Clear() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.f.Truncate(0); err != nil {
		return err
	}
	if err := s.f.Sync(); err != nil {
		return err
	}
	s.size, s.n = 0, 0
	return nil
}

// Close closes the file.
func (s *Spool) Close() error { return s.f.Close() }

// readAll parses the file; good is the length of its whole lines.
func (s *Spool) readAll() ([]Record, int64, error) {
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, 0, err
	}
	r := bufio.NewReaderSize(s.f, 64<<10)
	var recs []Record
	var good int64
	for {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			break // a partial last line, if any, is not counted
		}
		if err != nil {
			return nil, 0, fmt.Errorf("audit spool: %w", err)
		}
		rec, err := s.parse(line, good)
		if err != nil {
			return nil, 0, err
		}
		recs = append(recs, rec)
		good += int64(len(line))
	}
	return recs, good, nil
}
