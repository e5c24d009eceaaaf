//go:build !chdb

// Command chdbcheck checks troy's SQL on chDB; it is built with -tags chdb (see main.go).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "chdbcheck: build with -tags chdb and set CHDB_LIB_PATH to libchdb.so")
	os.Exit(2)
}
