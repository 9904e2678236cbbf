// Package egress owns the allow-list of a sandbox's outgoing connections:
// the rules (host names, wildcards, addresses and prefixes, each with
// ports), the names ursb's DNS handed out for them, the resolver that
// answers only allowed names, reading the name a client asks for from the
// first bytes of a connection (TLS SNI, HTTP Host), and the bounded log of
// what was denied.
//
// It decides; the builtin network stack in package slirp enforces. Nothing
// here touches a packet, so all of it is tested without a network.
package egress
