//go:build tools

// This file pins the code generator's version in go.mod, so that
// `go generate ./...` (see server.go) runs the same gqlgen for everyone.
package main

import _ "github.com/99designs/gqlgen"
