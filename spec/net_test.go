package spec

import (
	"encoding/json"
	"testing"
)

func TestNetMode(t *testing.T) {
	for _, c := range []struct {
		mode                           NetMode
		host, joined, shared, userMode bool
		peer                           string
	}{
		{mode: NetNone},
		{mode: NetHost, host: true, shared: true},
		{mode: "pasta", userMode: true},
		{mode: "slirp4netns", userMode: true},
		{mode: "builtin", userMode: true},
		{mode: NetSandbox("web"), joined: true, shared: true, peer: "web"},
	} {
		peer, joined := c.mode.Peer()
		if c.mode.Host() != c.host || c.mode.Joined() != c.joined || joined != c.joined || peer != c.peer ||
			c.mode.Shared() != c.shared || c.mode.UserMode() != c.userMode {
			t.Errorf("%q: host %v joined %v (%q) shared %v user-mode %v, want %v %v (%q) %v %v", c.mode,
				c.mode.Host(), c.mode.Joined(), peer, c.mode.Shared(), c.mode.UserMode(),
				c.host, c.joined, c.peer, c.shared, c.userMode)
		}
	}
}

// A record written before the mode had a type reads the same.
func TestNetModeJSON(t *testing.T) {
	var n Network
	if err := json.Unmarshal([]byte(`{"mode":"sandbox:db"}`), &n); err != nil {
		t.Fatal(err)
	}
	if peer, ok := n.Mode.Peer(); !ok || peer != "db" {
		t.Errorf("sandbox:db read as %q", n.Mode)
	}
	b, _ := json.Marshal(Network{Mode: NetHost})
	if string(b) != `{"mode":"host"}` {
		t.Errorf("host written as %s", b)
	}
}
