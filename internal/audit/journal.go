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
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Journal is the local write-ahead log of audit.commit: journal. Every
// chained record is appended to it, one write(2) per group of requests,
// before those requests are answered; the pipeline ships the journal into
// the store in large batches off the request path, and deletes what the
// store holds. A record in the journal survives the process being killed
// (the same guarantee as SQLite in WAL mode with synchronous=NORMAL);
// with fsync it also survives the machine losing power, at the cost of one
// fsync per group.
//
// The journal is a directory of segment files (journal-NNNNNNNN.jsonl), one
// record per line, oldest segment first. Only the newest is written; a
// segment is removed once every record in it is in the store. The
// directory is locked (flock) so that two gateways never share it.
type Journal struct {
	dir    string
	max    int64 // bound of all segments together
	segMax int64 // a segment is closed past this size
	fsync  bool
	lock   *os.File

	mu   sync.Mutex
	segs []*segment // oldest first; the last one is written
	f    *os.File   // the last segment, open for append
	size int64      // bytes in all segments
	n    int        // records in all segments
	last Record     // the newest record (Seq 0: none)
	buf  []byte

	beforeWrite func() // tests: runs before each write, to stall it
}

type segment struct {
	num  int
	path string
	size int64
	n    int
	last int64 // highest seq in it (0: empty)
}

// journalLine is one record on disk. Body is embedded as raw JSON: the
// canonical bytes, exactly as hashed, without a second escaping.
type journalLine struct {
	Node     string          `json:"node"`
	Seq      int64           `json:"seq"`
	PrevHash string          `json:"prev_hash"`
	Hash     string          `json:"hash"`
	Body     json.RawMessage `json:"body"`
}

// ErrJournalFull is returned when the journal would grow past its bound:
// the store has fallen that far behind.
var ErrJournalFull = errors.New("audit journal full")

// ErrJournalInUse is returned by OpenJournal when another process (a
// running gateway) holds the journal.
var ErrJournalInUse = errors.New("audit journal in use")

// DefaultSegmentBytes is the size at which a journal segment is closed.
const DefaultSegmentBytes = 8 << 20

// OpenJournal opens (creating) the journal in dir, bounded to max bytes.
// Records left by an earlier run stay, to be shipped; a torn last line
// (the process died inside a write, before the requests of that write
// were answered) is cut off.
func OpenJournal(dir string, max int64, fsync bool) (*Journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit journal: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit journal: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("%w: %s is locked by another process (each gateway node needs its own audit.journal_dir): %v", ErrJournalInUse, dir, err)
	}
	j := &Journal{dir: dir, max: max, segMax: DefaultSegmentBytes, fsync: fsync, lock: lock}
	if err := j.load(); err != nil {
		j.Close()
		return nil, err
	}
	return j, nil
}

func (j *Journal) load() error {
	names, err := filepath.Glob(filepath.Join(j.dir, "journal-*.jsonl"))
	if err != nil {
		return err
	}
	for _, name := range names {
		num, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(name), "journal-"), ".jsonl"))
		if err != nil {
			continue // not ours
		}
		j.segs = append(j.segs, &segment{num: num, path: name})
	}
	slices.SortFunc(j.segs, func(a, b *segment) int { return a.num - b.num })
	for i, s := range j.segs {
		newest := i == len(j.segs)-1
		var order error
		good, err := j.scan(s, 0, func(r Record) bool {
			if j.last.Seq != 0 && r.Seq != j.last.Seq+1 {
				order = fmt.Errorf("audit journal %s: record %d follows %d", s.path, r.Seq, j.last.Seq)
				return false
			}
			j.last = r
			s.last = r.Seq
			s.n++
			return true
		})
		if err = errors.Join(err, order); err != nil {
			return err
		}
		s.size = good
		if fi, err := os.Stat(s.path); err == nil && fi.Size() > good {
			if !newest {
				return fmt.Errorf("audit journal %s: damaged inside (%d of %d bytes readable)", s.path, good, fi.Size())
			}
			if err := os.Truncate(s.path, good); err != nil {
				return fmt.Errorf("audit journal: %w", err)
			}
		}
		j.size += s.size
		j.n += s.n
	}
	if len(j.segs) == 0 {
		return j.newSegment(1)
	}
	s := j.segs[len(j.segs)-1]
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("audit journal: %w", err)
	}
	j.f = f
	return nil
}

// scan calls fn with each whole record of s with seq > after, until fn
// returns false; good is the offset after the last whole line read.
func (j *Journal) scan(s *segment, after int64, fn func(Record) bool) (good int64, err error) {
	f, err := os.Open(s.path)
	if err != nil {
		return 0, fmt.Errorf("audit journal: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			return good, nil // a partial last line, if any, is not counted
		}
		if err != nil {
			return good, fmt.Errorf("audit journal: %w", err)
		}
		if seq, ok := lineSeq(line); ok && seq <= after {
			good += int64(len(line))
			continue // shipped already: not worth decoding
		}
		rec, err := parseJournalLine(line)
		if err != nil {
			return good, fmt.Errorf("audit journal %s: record at byte %d: %w", s.path, good, err)
		}
		good += int64(len(line))
		if !fn(rec) {
			return good, nil
		}
	}
}

func parseJournalLine(line []byte) (Record, error) {
	var l journalLine
	if err := json.Unmarshal(line, &l); err != nil {
		return Record{}, fmt.Errorf("unreadable: %w", err)
	}
	rec := Record{Node: l.Node, Seq: l.Seq, Body: string(l.Body), PrevHash: l.PrevHash, Hash: l.Hash}
	if err := json.Unmarshal(l.Body, &rec.Event); err != nil {
		return Record{}, fmt.Errorf("event unreadable: %w", err)
	}
	return rec, nil
}

// lineSeq reads the seq of a line written by appendJournalLine without
// decoding it (ok false: decode it).
func lineSeq(line []byte) (int64, bool) {
	const key = `,"seq":`
	i := bytes.Index(line, []byte(key))
	if i < 0 || i > 512 {
		return 0, false
	}
	rest := line[i+len(key):]
	n := 0
	for n < len(rest) && n < 19 && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	if n == 0 || n == len(rest) || rest[n] != ',' {
		return 0, false
	}
	seq, err := strconv.ParseInt(string(rest[:n]), 10, 64)
	return seq, err == nil
}

// appendJournalLine encodes r as one line.
func appendJournalLine(b []byte, r *Record) []byte {
	b = append(b, `{"node":`...)
	b = strconv.AppendQuote(b, r.Node)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, r.Seq, 10)
	b = append(b, `,"prev_hash":"`...)
	b = append(b, r.PrevHash...) // hex
	b = append(b, `","hash":"`...)
	b = append(b, r.Hash...)
	b = append(b, `","body":`...)
	b = append(b, r.Body...) // canonical JSON: one line, valid
	return append(b, "}\n"...)
}

func (j *Journal) newSegment(num int) error {
	s := &segment{num: num, path: filepath.Join(j.dir, fmt.Sprintf("journal-%08d.jsonl", num))}
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("audit journal: %w", err)
	}
	if j.f != nil {
		j.f.Close()
	}
	j.f = f
	j.segs = append(j.segs, s)
	return nil
}

// JournalLast returns the newest seq in the journal in dir without opening
// it for writing (a reader beside the gateway that holds it); 0 when it
// holds no record. A segment being written or removed meanwhile is read as
// far as it goes.
func JournalLast(dir string) (int64, error) {
	names, err := filepath.Glob(filepath.Join(dir, "journal-*.jsonl"))
	if err != nil {
		return 0, err
	}
	slices.Sort(names) // zero-padded numbers: oldest first
	for i := len(names) - 1; i >= 0; i-- {
		b, err := os.ReadFile(names[i])
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("audit journal: %w", err)
		}
		end := bytes.LastIndexByte(b, '\n') // a partial last line is not a record yet
		if end < 0 {
			continue
		}
		line := b[bytes.LastIndexByte(b[:end], '\n')+1 : end+1]
		if seq, ok := lineSeq(line); ok {
			return seq, nil
		}
		r, err := parseJournalLine(line)
		if err != nil {
			return 0, fmt.Errorf("audit journal %s: last record: %w", names[i], err)
		}
		return r.Seq, nil
	}
	return 0, nil
}

// Dir is the journal's directory.
func (j *Journal) Dir() string { return j.dir }

// Len is the number of records in the journal (shipped or not).
func (j *Journal) Len() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.n
}

// Size is the journal's size in bytes.
func (j *Journal) Size() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.size
}

// Last returns the newest record (Seq 0 when the journal is empty).
func (j *Journal) Last() Record {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.last
}

// Append writes recs, which must continue the journal's sequence, with one
// write(2), and fsyncs when configured; on error nothing of recs counts.
func (j *Journal) Append(recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	b := j.buf[:0]
	for i := range recs {
		b = appendJournalLine(b, &recs[i])
	}
	if cap(b) <= 1<<20 {
		j.buf = b
	}
	if j.size+int64(len(b)) > j.max {
		return fmt.Errorf("%w: %d bytes waiting for the store, bound %d", ErrJournalFull, j.size, j.max)
	}
	s := j.segs[len(j.segs)-1]
	if j.beforeWrite != nil {
		j.beforeWrite()
	}
	if _, err := j.f.Write(b); err != nil {
		j.f.Truncate(s.size) // drop a partial write
		return fmt.Errorf("audit journal: %w", err)
	}
	if j.fsync {
		if err := j.f.Sync(); err != nil {
			j.f.Truncate(s.size)
			return fmt.Errorf("audit journal: %w", err)
		}
	}
	s.size += int64(len(b))
	s.n += len(recs)
	s.last = recs[len(recs)-1].Seq
	j.size += int64(len(b))
	j.n += len(recs)
	j.last = recs[len(recs)-1]
	if s.size >= j.segMax {
		if err := j.newSegment(s.num + 1); err != nil {
			// The records are written; the next Append retries the rotation
			// by writing on into the old segment.
			return nil
		}
	}
	return nil
}

// Read returns up to max records with seq > after, in order, from the
// files (the path of recovery: records not handed to the shipper in
// memory, or left by an earlier run).
func (j *Journal) Read(after int64, max int) ([]Record, error) {
	j.mu.Lock()
	segs := make([]segment, 0, len(j.segs))
	for _, s := range j.segs {
		segs = append(segs, *s)
	}
	j.mu.Unlock()
	var out []Record
	for i := range segs {
		s := &segs[i]
		if s.last <= after || s.n == 0 {
			continue
		}
		// Read no further than the last record known now: a concurrent
		// Append may be writing past it.
		_, err := j.scan(s, after, func(r Record) bool {
			if r.Seq > after {
				out = append(out, r)
			}
			return len(out) < max && r.Seq < s.last
		})
		if err != nil {
			return nil, err
		}
		if len(out) >= max {
			break
		}
	}
	return out, nil
}

// Release drops the records with seq ≤ through: the store holds them.
// Older segments are removed whole; the segment being written is emptied
// when everything in it is released.
func (j *Journal) Release(through int64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	keep := j.segs[:0]
	var errs []error
	for i, s := range j.segs {
		current := i == len(j.segs)-1
		if s.n > 0 && s.last > through {
			keep = append(keep, s)
			continue
		}
		// Every record of s is in the store (or s is empty).
		if current {
			if s.size > 0 {
				if err := j.f.Truncate(0); err != nil {
					errs = append(errs, err)
				} else {
					j.size -= s.size
					j.n -= s.n
					s.size, s.n = 0, 0
				}
			}
			keep = append(keep, s)
			continue
		}
		if err := os.Remove(s.path); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
			keep = append(keep, s)
			continue
		}
		j.size -= s.size
		j.n -= s.n
	}
	j.segs = keep
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("audit journal: %w", err)
	}
	return nil
}

// Close closes the journal and unlocks its directory.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	var err error
	if j.f != nil {
		err = j.f.Close()
		j.f = nil
	}
	if j.lock != nil {
		j.lock.Close() // closing releases the flock
		j.lock = nil
	}
	return err
}
