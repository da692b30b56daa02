//go:build tools

// This file pins the code generators' versions in go.mod, so that
// `go generate ./...` runs the same ones for everyone: gqlgen (see
// server.go) and genqlient (the Go client example, examples/genqlient).
package main

import (
	_ "github.com/99designs/gqlgen"
	_ "github.com/Khan/genqlient"
)
