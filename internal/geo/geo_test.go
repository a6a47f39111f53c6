package geo

import (
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/ztgate/ztgate/internal/geo/geotest"
)

func TestCountry(t *testing.T) {
	db, err := Open(geotest.WriteDB(t, map[string]string{"81.2.69.0/24": "GB", "2001:db8::/32": "DE", "10.0.0.0/8": "FR"}))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tests := []struct{ ip, want string }{
		{"81.2.69.160", "GB"}, {"2001:db8::1", "DE"}, {"10.9.8.7", "FR"}, {"::ffff:10.9.8.7", "FR"}, {"8.8.8.8", ""}, {"", ""},
	}
	for _, tt := range tests {
		var ip netip.Addr
		if tt.ip != "" {
			ip = netip.MustParseAddr(tt.ip)
		}
		if got := db.Country(ip); got != tt.want {
			t.Errorf("Country(%s): got %q, want %q", tt.ip, got, tt.want)
		}
	}
	if _, err := Open(filepath.Join(t.TempDir(), "nope.mmdb")); err == nil {
		t.Error("Open of a missing file: got no error")
	}
}
