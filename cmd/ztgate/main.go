// Command ztgate is a Zero Trust gateway for APIs and services.
package main

import (
	"os"

	"github.com/ztgate/ztgate/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
