// Package security is the attack suite: each case is a hostile request sent
// to the real gateway binary, with the answer it must get and the proof that
// the upstream never saw what the attacker wanted it to see.
package security
