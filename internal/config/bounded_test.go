package config

import (
	"strings"
	"testing"
)

func TestBoundedREKeepsTheBound(t *testing.T) {
	tests := []struct {
		name string
		re   boundedRE
		s    string
		want bool
	}{
		{"name at 63", nameRE, "a" + strings.Repeat("b", 62), true},
		{"name at 64", nameRE, "a" + strings.Repeat("b", 63), false},
		{"name empty", nameRE, "", false},
		{"name starts with dash", nameRE, "-a", false},
		{"method at 20", methodRE, strings.Repeat("G", 20), true},
		{"method at 21", methodRE, strings.Repeat("G", 21), false},
		{"header at 64", headerNameRE, "X" + strings.Repeat("a", 63), true},
		{"header at 65", headerNameRE, "X" + strings.Repeat("a", 64), false},
		{"api key header at 65", apiKeyHeaderRE, strings.Repeat("k", 65), false},
		{"vault name at 127", vaultSecretNameRE, strings.Repeat("v", 127), true},
		{"vault name at 128", vaultSecretNameRE, strings.Repeat("v", 128), false},
		{"env name at 128", envSecretNameRE, "A" + strings.Repeat("_", 127), true},
		{"env name at 129", envSecretNameRE, "A" + strings.Repeat("_", 128), false},
		{"file name at 129", fileSecretNameRE, strings.Repeat("f", 129), false},
		{"non-ASCII", nameRE, "café", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.re.MatchString(tt.s); got != tt.want {
				t.Errorf("MatchString(%q) = %v, want %v", tt.s, got, tt.want)
			}
		})
	}
}
