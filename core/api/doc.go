// Package api defines Paddock's resource model: the kinds (Tenant, Node,
// RuntimeClass, Token, Pod, Deployment, ReplicaSet, Service, Endpoints,
// Secret, ConfigMap, Event), their strict decoding from YAML and JSON,
// defaulting, validation, quantities and label and field selectors.
//
// Objects are Kubernetes-shaped: apiVersion paddock.dev/v1, kind, metadata,
// spec and status. The package does no I/O and holds no mutable state; the
// table of kinds (Kinds) is fixed at compile time. Every error it returns
// for user input is an *errdefs.Error naming the field: class
// errdefs.ErrBadRequest for input that cannot be decoded (malformed, an
// unknown kind or field, a wrong type) and errdefs.ErrInvalidArgument for
// input that decodes but is not valid.
package api
