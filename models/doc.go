// Package models holds Switchboard's domain types, its error codes and the
// validation rules of user input. It imports only the standard library and,
// for the rules of names, golang.org/x/text's PRECIS profiles: GORM and
// JSON tags are plain strings here, so every other package can depend on
// models without dragging a driver along.
//
// gqlgen binds the GraphQL types of schema.graphqls to these types by name
// (autobind), so a field added here appears in the API only when the schema
// names it.
package models
