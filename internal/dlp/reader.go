package dlp

import (
	"errors"
	"io"
)

// ErrOverLimit is returned by a Reader that fails closed once its body is
// longer than its limit.
var ErrOverLimit = errors.New("dlp: body longer than the scan limit")

// Reader masks a body as it is read. The first limit bytes are scanned;
// past them the body is either passed through as it is (counted in
// Unscanned) or, failing closed, reading stops with ErrOverLimit.
type Reader struct {
	src       io.Reader
	m         *Masker
	limit     int64
	failOver  bool
	in        int64 // bytes read from src and scanned
	unscanned int64
	finished  bool // the Masker has been given the end
	buf       []byte
	out       []byte
	off       int
	err       error
}

// NewReader returns a Reader masking src, a body of kind k.
func (p *Policy) NewReader(src io.Reader, k Kind, limit int64, failOver bool) *Reader {
	return &Reader{src: src, m: p.NewMasker(k), limit: limit, failOver: failOver, buf: make([]byte, 32<<10)}
}

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	for r.off == len(r.out) {
		if r.err != nil {
			return 0, r.err
		}
		if r.finished {
			// Past the limit: the rest passes unscanned.
			n, err := r.src.Read(p)
			r.unscanned += int64(n)
			if err != nil {
				r.err = err
			}
			if n > 0 || err != nil {
				return n, err
			}
			continue
		}
		r.fill()
	}
	n := copy(p, r.out[r.off:])
	r.off += n
	return n, nil
}

func (r *Reader) fill() {
	r.out, r.off = r.out[:0], 0
	want := int64(len(r.buf))
	if left := r.limit - r.in; left < want {
		want = left
	}
	if want == 0 {
		// At the limit: one more byte tells whether the body goes on.
		var one [1]byte
		n, err := io.ReadFull(r.src, one[:])
		if n == 0 {
			r.out = r.m.Finish(r.out)
			r.finished = true
			if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				r.err = err
			} else {
				r.err = io.EOF
			}
			return
		}
		if r.failOver {
			r.err = ErrOverLimit
			return
		}
		r.out = r.m.Finish(r.out)
		r.out = append(r.out, one[0])
		r.unscanned++
		r.finished = true
		return
	}
	n, err := r.src.Read(r.buf[:want])
	r.in += int64(n)
	r.out = r.m.Append(r.out, r.buf[:n])
	switch {
	case errors.Is(err, io.EOF):
		r.out = r.m.Finish(r.out)
		r.finished = true
		r.err = io.EOF
	case err != nil:
		r.err = err
	}
}

// Result reports the matches in what has been read.
func (r *Reader) Result() Result { return r.m.Result() }

// Unscanned is the number of bytes passed through past the limit.
func (r *Reader) Unscanned() int64 { return r.unscanned }

// Scanned is the number of bytes read and scanned.
func (r *Reader) Scanned() int64 { return r.in }
