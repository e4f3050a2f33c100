// Package streams is the node agent's stream endpoint: it serves the
// container logs and exec sessions that users reach through the API
// server's pods/log and pods/exec subresources.
//
// A Server serves HTTPS on the node (port DefaultPort unless configured):
//
//	GET /logs/{tenant}/{pod}/{container}?follow=&sinceSeconds=&sinceTime=&tailLines=&timestamps=&previous=
//	GET /exec/{tenant}/{pod}/{container}?command=C&command=ARG...&stdin=&tty=   (WebSocket)
//
// The container segment may be left out when the pod has one container.
// Logs come back as text lines, flushed line by line when following.
// Exec is a WebSocket whose binary messages start with a channel byte
// (ChannelStdin, ChannelStdout, ... see the constants); docs/api.md
// describes the protocol.
//
// The endpoint serves only the API server: the TLS handshake requires a
// client certificate signed by the cluster CA with the common name
// pki.APIServerClientName. The server's own certificate is self-signed,
// kept in the agent's data directory so that it survives restarts, and
// published by the agent as the fingerprint in its Node's
// status.daemonEndpoint, which the API server pins.
//
// The Server finds containers through a Resolver that the agent
// implements; its errors are core/errdefs classes and become HTTP
// statuses the way the API server maps them. Run serves until its
// context ends and returns once every connection has closed.
package streams
