package cli

import (
	"io"
	"runtime"
	"sync"
)

// logWriter takes the gateway's log lines off the request path: Write
// queues a line and a goroutine writes what is queued. The lines queued
// while it waits for the CPU or for a write(2) go out together in the
// next write, so under load a request no longer pays for a write(2) of
// its own log line, and a line still goes out as soon as the goroutine
// runs: there is no timer, and an idle gateway writes each line at once.
//
// Lines stay whole and in order (slog writes one line per Write). When
// maxPending bytes wait, Write blocks until the writer takes them, as a
// direct write to a slow stderr would; nothing is dropped. Close writes
// what is left; after it, lines go straight through.
type logWriter struct {
	w          io.Writer
	maxPending int

	mu      sync.Mutex
	room    sync.Cond // the writer took the pending lines, or Close ran
	pending []byte
	closed  bool

	wake      chan struct{} // lines are pending (buffered, one slot)
	stop      chan struct{}
	done      chan struct{} // the writer goroutine has returned
	closeOnce sync.Once
	closeErr  error
}

func newLogWriter(w io.Writer, maxPending int) *logWriter {
	l := &logWriter{
		w:          w,
		maxPending: maxPending,
		wake:       make(chan struct{}, 1),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	l.room.L = &l.mu
	go l.run()
	return l
}

// Write queues p (one log line) and returns; it reports no write errors,
// which slog drops in any case.
func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	for !l.closed && len(l.pending) > 0 && len(l.pending)+len(p) > l.maxPending {
		l.room.Wait()
	}
	if l.closed {
		defer l.mu.Unlock()
		return l.w.Write(p)
	}
	l.pending = append(l.pending, p...)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default: // the writer is already due
	}
	return len(p), nil
}

func (l *logWriter) run() {
	defer close(l.done)
	var out []byte
	for {
		select {
		case <-l.stop:
			return // Close writes what is pending
		case <-l.wake:
		}
		// A woken goroutine runs next on this CPU; yielding once lets the
		// requests that are ready to run log their lines first.
		runtime.Gosched()
		l.mu.Lock()
		out, l.pending = l.pending, out[:0]
		l.room.Broadcast()
		l.mu.Unlock()
		if len(out) > 0 {
			_, _ = l.w.Write(out)
		}
		if cap(out) > 4*l.maxPending {
			out = nil // a burst's buffer is not kept
		}
	}
}

// Close writes the pending lines and stops the goroutine; later lines are
// written directly.
func (l *logWriter) Close() error {
	l.closeOnce.Do(func() {
		close(l.stop)
		<-l.done
		l.mu.Lock()
		defer l.mu.Unlock()
		l.closed = true
		l.room.Broadcast()
		if len(l.pending) > 0 {
			_, l.closeErr = l.w.Write(l.pending)
			l.pending = nil
		}
	})
	return l.closeErr
}
