// Package deptest checks the direction of imports between ztgate's packages.
//
// It has no code of its own: its tests run "go list" on the module and fail
// when a package imports what it must not, or when a package lacks a
// package doc comment.
package deptest
