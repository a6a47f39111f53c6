// Package pgtest starts a real PostgreSQL server on loopback for tests: the
// Debian postgresql package's initdb and postgres, run as the unprivileged
// postgres user when the tests run as root. ./scripts/test installs the
// package; without it a test using this package fails and says so.
package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// Server is one PostgreSQL server, stoppable and restartable on its port
// (fault tests take it down and bring it back).
type Server struct {
	tb      testing.TB
	bin     string
	data    string
	port    int
	cred    *syscall.Credential
	cmd     *exec.Cmd
	exited  chan struct{}
	logFile string
}

var (
	templateOnce sync.Once
	templateDir  string
	templateErr  error
	dbSeq        int
	dbSeqMu      sync.Mutex
)

// binDir finds the newest installed PostgreSQL's bin directory.
func binDir() (string, error) {
	if p, err := exec.LookPath("postgres"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(p), "initdb")); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("PostgreSQL not found: ./scripts/test installs it (Debian package postgresql)")
}

// credential is who the server runs as: PostgreSQL refuses to run as root.
func credential() (*syscall.Credential, error) {
	if os.Getuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and no postgres user to run PostgreSQL as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// chownAll gives dir to the server's user.
func chownAll(dir string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(cred.Uid), int(cred.Gid))
	})
}

func run(cred *syscall.Credential, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v\n%s", filepath.Base(name), err, out)
	}
	return nil
}

// template runs initdb once per machine and PostgreSQL version (the
// directory is kept in the temporary directory and reused by every test
// binary after); each server starts from a copy.
func template() (string, error) {
	templateOnce.Do(func() {
		templateDir, templateErr = makeTemplate()
	})
	return templateDir, templateErr
}

func makeTemplate() (string, error) {
	bin, err := binDir()
	if err != nil {
		return "", err
	}
	cred, err := credential()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(filepath.Join(bin, "postgres"), "--version").Output()
	if err != nil {
		return "", fmt.Errorf("postgres --version: %w", err)
	}
	version := strings.Join(strings.Fields(strings.TrimSpace(string(out))), "-")
	version = strings.Map(func(r rune) rune {
		if r == '/' || r == '(' || r == ')' {
			return '_'
		}
		return r
	}, version)
	final := filepath.Join(os.TempDir(), fmt.Sprintf("ztgate-pgtemplate-%s-%d", version, os.Getuid()))
	if _, err := os.Stat(filepath.Join(final, "data", "ztgate-template-complete")); err == nil {
		return filepath.Join(final, "data"), nil
	}
	root, err := os.MkdirTemp("", "ztgate-pgtemplate-new-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(root) // left only when the rename below did not happen
	os.Chmod(root, 0o755)
	dir := filepath.Join(root, "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", err
	}
	if err := chownAll(dir, cred); err != nil {
		return "", err
	}
	if err := run(cred, filepath.Join(bin, "initdb"), "-D", dir, "-U", "ztgate", "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "ztgate-template-complete"), nil, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(root, final); err != nil {
		// Another test binary made it first: use theirs.
		if _, serr := os.Stat(filepath.Join(final, "data", "ztgate-template-complete")); serr == nil {
			return filepath.Join(final, "data"), nil
		}
		return "", err
	}
	return filepath.Join(final, "data"), nil
}

// Start starts a fresh server for the test; it is stopped when the test
// ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	tmpl, err := template()
	if err != nil {
		tb.Fatal(err)
	}
	bin, _ := binDir()
	cred, _ := credential()
	root, err := os.MkdirTemp("", "ztgate-pg-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(root) })
	os.Chmod(root, 0o755)
	data := filepath.Join(root, "data")
	if out, err := exec.Command("cp", "-a", tmpl, data).CombinedOutput(); err != nil {
		tb.Fatalf("copy the PostgreSQL template: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &Server{tb: tb, bin: bin, data: data, port: port, cred: cred, logFile: filepath.Join(root, "postgres.log")}
	s.Start()
	tb.Cleanup(s.Stop)
	return s
}

// Start (re)starts the server on its port and waits until it answers.
func (s *Server) Start() {
	s.tb.Helper()
	if s.cmd != nil {
		return
	}
	logf, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.tb.Fatal(err)
	}
	// fsync off: the tests kill the gateway, never the machine.
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", s.data, "-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "fsync=off",
		"-c", "full_page_writes=off", "-c", "max_connections=100", "-c", "shared_buffers=32MB")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.tb.Fatal(err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(s.exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		db, err := sql.Open("pgx", s.url("postgres"))
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err = db.PingContext(ctx)
			cancel()
			db.Close()
		}
		if err == nil {
			return
		}
		select {
		case <-s.exited:
			out, _ := os.ReadFile(s.logFile)
			s.tb.Fatalf("postgres exited at start:\n%s", out)
		default:
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(s.logFile)
			s.tb.Fatalf("postgres did not answer within 20 s: %v\n%s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the server (fast shutdown: open sessions are cut).
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
	s.cmd = nil
}

// Port is the server's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

func (s *Server) url(db string) string {
	return fmt.Sprintf("postgres://ztgate@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// NewDatabase creates an empty database and returns its URL.
func (s *Server) NewDatabase() string {
	s.tb.Helper()
	dbSeqMu.Lock()
	dbSeq++
	name := fmt.Sprintf("t%d", dbSeq)
	dbSeqMu.Unlock()
	db, err := sql.Open("pgx", s.url("postgres"))
	if err != nil {
		s.tb.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		s.tb.Fatal(err)
	}
	return s.url(name)
}

// DSN starts a server for the test and returns the URL of a fresh database.
func DSN(tb testing.TB) string {
	tb.Helper()
	return Start(tb).NewDatabase()
}
