// Package geo maps client IP addresses to countries with a MaxMind-format
// database file (GeoLite2 / GeoIP2 Country or City, or any compatible one).
package geo

import (
	"fmt"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// DB is an open country database. It is safe for concurrent use.
type DB struct {
	r *maxminddb.Reader
}

// Open opens the database file at path.
func Open(path string) (*DB, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("geoip database %s: %w", path, err)
	}
	return &DB{r: r}, nil
}

type record struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	Location struct {
		Latitude  *float64 `maxminddb:"latitude"`
		Longitude *float64 `maxminddb:"longitude"`
	} `maxminddb:"location"`
}

// Location is what the database says of an address: its country and,
// with a city database, its coordinates.
type Location struct {
	Country     string
	Lat, Lon    float64
	HasPosition bool
}

// Lookup returns ip's location; the zero Location when unknown.
func (db *DB) Lookup(ip netip.Addr) Location {
	if db == nil || !ip.IsValid() {
		return Location{}
	}
	var rec record
	if err := db.r.Lookup(ip.Unmap()).Decode(&rec); err != nil {
		return Location{}
	}
	l := Location{Country: rec.Country.ISOCode}
	if la, lo := rec.Location.Latitude, rec.Location.Longitude; la != nil && lo != nil {
		l.Lat, l.Lon, l.HasPosition = *la, *lo, true
	}
	return l
}

// Country returns the ISO 3166-1 alpha-2 code of ip's country, or "" when
// the database does not know it.
func (db *DB) Country(ip netip.Addr) string {
	if db == nil || !ip.IsValid() {
		return ""
	}
	var rec record
	if err := db.r.Lookup(ip.Unmap()).Decode(&rec); err != nil {
		return ""
	}
	return rec.Country.ISOCode
}

// Close releases the database.
func (db *DB) Close() error {
	if db == nil {
		return nil
	}
	return db.r.Close()
}
