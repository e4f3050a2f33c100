// Package importrules enforces the dependency rules of
// shared/design/architecture.md ("Package map and the dependency rule"):
// which Paddock packages may import which, and which packages alone may
// import etcd and memberlist.
//
// It has no code of its own. Its test parses the imports of every non-test
// Go file in the module and fails on each forbidden edge, naming the
// importing package, the import and the reason. The rules are a table in
// importrules_test.go; change the table, with the reason, when the
// architecture changes.
package importrules
