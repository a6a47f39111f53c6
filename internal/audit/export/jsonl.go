package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/ztgate/ztgate/internal/audit"
)

// jsonlSender writes one JSON line per record to standard output or to a
// file rotated by size.
type jsonlSender struct {
	w   io.Writer // standard output; nil with a file
	rot *rotator
}

var _ Sender = (*jsonlSender)(nil)

func (s *jsonlSender) Send(_ context.Context, recs []audit.Record) error {
	if s.rot != nil {
		return s.rot.writeLines(recs)
	}
	var buf []byte
	for i := range recs {
		line, err := marshalEnvelope(&recs[i])
		if err != nil {
			return Permanent(err)
		}
		buf = append(append(buf, line...), '\n')
	}
	if _, err := s.w.Write(buf); err != nil {
		return err
	}
	return nil
}

func (s *jsonlSender) Close() error {
	if s.rot != nil {
		return s.rot.close()
	}
	return nil
}

// rotator appends to path and, before a line would take the file past max
// bytes, renames it to path.1 (path.1 to path.2, ...), keeping keep files.
type rotator struct {
	path string
	max  int64
	keep int

	mu   sync.Mutex
	f    *os.File
	size int64
}

func (r *rotator) open() error {
	if err := os.MkdirAll(filepath.Dir(r.path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.size = f, fi.Size()
	return nil
}

func (r *rotator) rotate() error {
	if r.f != nil {
		if err := r.f.Close(); err != nil {
			return err
		}
		r.f = nil
	}
	for i := r.keep - 1; i >= 1; i-- {
		err := os.Rename(fmt.Sprintf("%s.%d", r.path, i), fmt.Sprintf("%s.%d", r.path, i+1))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := os.Rename(r.path, r.path+".1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return r.open()
}

// writeLines writes a line per record, rotating between lines; on an
// error it reports how many records were written.
func (r *rotator) writeLines(recs []audit.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		if err := r.open(); err != nil {
			return err
		}
	}
	var buf []byte
	flushed := 0
	flush := func(upto int) error {
		if len(buf) == 0 {
			return nil
		}
		n, err := r.f.Write(buf)
		r.size += int64(n)
		buf = buf[:0]
		if err != nil {
			return &Partial{Sent: flushed, Err: err}
		}
		flushed = upto
		return nil
	}
	for i := range recs {
		line, err := marshalEnvelope(&recs[i])
		if err != nil {
			return &Partial{Sent: flushed, Err: Permanent(err)}
		}
		line = append(line, '\n')
		if r.size+int64(len(buf))+int64(len(line)) > r.max && r.size+int64(len(buf)) > 0 {
			if err := flush(i); err != nil {
				return err
			}
			if err := r.rotate(); err != nil {
				return &Partial{Sent: flushed, Err: err}
			}
		}
		buf = append(buf, line...)
	}
	return flush(len(recs))
}

func (r *rotator) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
