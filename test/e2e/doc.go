// Package e2e holds end-to-end tests: they build the real ztgate binary,
// start it against real servers on loopback and speak HTTP to it.
package e2e
