package secrets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// MaxSecretBytes bounds a secret read from a file.
const MaxSecretBytes = 64 << 10

// Names are at most maxNameLen characters, checked apart from the
// patterns: a bound written in a pattern ({0,127}) compiles into a state per
// repetition, tens of kilobytes of heap for the life of the process.
const maxNameLen = 128

var (
	envNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	fileNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
)

// Env reads secrets from environment variables named Prefix+name.
type Env struct {
	Prefix string
}

var _ Provider = Env{}

// Fetch returns the variable's value; an unset variable is ErrNotFound.
// Env has no versions.
func (e Env) Fetch(_ context.Context, name, version string) (Secret, error) {
	if version != "" {
		return Secret{}, errors.New("environment variables have no versions")
	}
	v := e.Prefix + name
	if len(v) > maxNameLen || !envNameRE.MatchString(v) {
		return Secret{}, fmt.Errorf("bad secret name %q: want letters, digits and _", name)
	}
	val, ok := os.LookupEnv(v)
	if !ok {
		return Secret{}, fmt.Errorf("environment variable %s is not set: %w", v, ErrNotFound)
	}
	return Secret{Value: NewValue(val)}, nil
}

// File reads each secret from its own file in Dir (the layout of Kubernetes
// secret volumes and Docker secrets). One trailing newline is trimmed. A
// file replaced in place (as Kubernetes does on rotation) is read anew at
// the next refresh.
type File struct {
	Dir string
}

var _ Provider = File{}

// Fetch reads Dir/name. File has no versions.
func (f File) Fetch(_ context.Context, name, version string) (Secret, error) {
	if version != "" {
		return Secret{}, errors.New("files have no versions")
	}
	if len(name) > maxNameLen || !fileNameRE.MatchString(name) || strings.Contains(name, "..") {
		return Secret{}, fmt.Errorf("bad secret name %q: one file name, no path", name)
	}
	fh, err := os.Open(filepath.Join(f.Dir, name))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Secret{}, fmt.Errorf("secret %q not found in %s: %w", name, f.Dir, ErrNotFound)
		}
		return Secret{}, fmt.Errorf("read secret %q: %w", name, errors.Unwrap(err))
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, MaxSecretBytes+1))
	if err != nil {
		return Secret{}, fmt.Errorf("read secret %q: %w", name, err)
	}
	if len(b) > MaxSecretBytes {
		return Secret{}, fmt.Errorf("secret %q is larger than %d bytes", name, MaxSecretBytes)
	}
	s := strings.TrimSuffix(string(b), "\n")
	return Secret{Value: NewValue(strings.TrimSuffix(s, "\r"))}, nil
}
