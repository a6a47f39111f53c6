package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/ztgate/ztgate/test/harness"
)

// The end-to-end tests speak to the real binary through the shared harness.
type (
	upstream = harness.Upstream
	issuer   = harness.Issuer
)

var (
	newUpstream    = harness.NewUpstream
	newIssuer      = harness.NewIssuer
	startGateway   = harness.StartGateway
	startGatewayIn = harness.StartGatewayIn
	do             = harness.Do
	tryDo          = harness.TryDo
	decodeError    = harness.DecodeError
	rawRequest     = harness.RawRequest
	waitFor        = harness.WaitFor
	runBinary      = harness.Run
)

func TestMain(m *testing.M) {
	cleanup, err := harness.Build(raceEnabled)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// baseConfig is the configuration most tests run: an issuer, one service with
// a public-ish area (any authenticated caller), an orders area (role) and an
// admin area (Admin role).
func baseConfig(is *issuer, up *upstream) string {
	return fmt.Sprintf(`listen:
  address: "127.0.0.1:0"
  shutdown_timeout: 10s
admin:
  address: "127.0.0.1:0"
identity:
  providers:
    - name: test
      type: oidc
      issuer: %q
      audiences: [orders-api]
services:
  - name: orders
    upstream: %q
    routes:
      - name: public
        match: { path: "/public/**" }
        allow: { authenticated: true }
      - name: read-orders
        match: { methods: [GET], path: "/orders/**" }
        allow: { roles: [Orders.Read] }
      - name: write-orders
        match: { methods: [POST], path: "/orders/**" }
        allow: { roles: [Orders.Write] }
      - name: admin
        match: { path: "/admin/**" }
        allow: { roles: [Admin] }
      - name: slow
        match: { path: "/slow/**" }
        allow: { authenticated: true }
`, is.URL, up.URL)
}
