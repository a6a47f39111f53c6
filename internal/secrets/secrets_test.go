package secrets

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ztgate/ztgate/internal/config"
)

func TestResolver(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "api-key"), []byte("s3cret\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "crlf"), []byte("v\r\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "big"), make([]byte, MaxSecretBytes+1), 0o600)
	t.Setenv("ZT_DB_PASSWORD", "pw")
	r, err := NewResolver([]config.SecretProvider{{Name: "files", Type: "file", Dir: dir}, {Name: "env", Type: "env", Prefix: "ZT_"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		provider, name, want, err string
	}{
		{"files", "api-key", "s3cret", ""},
		{"files", "crlf", "v", ""},
		{"env", "DB_PASSWORD", "pw", ""},
		{"env", "MISSING", "", "ZT_MISSING is not set"},
		{"env", "bad-name", "", "bad secret name"},
		{"files", "nope", "", "not found"},
		{"files", "../etc/passwd", "", "bad reference"},
		{"files", "key/v1", "", "files have no versions"},
		{"files", "..", "", "bad secret name"},
		{"files", "big", "", "larger than"},
		{"vault", "x", "", "no secret provider named \"vault\""},
	}
	for _, tt := range tests {
		t.Run(tt.provider+"/"+tt.name, func(t *testing.T) {
			got, err := r.Resolve(tt.provider, tt.name)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %q, %v; want error containing %q", got, err, tt.err)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Fatal("error reveals a secret value")
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
