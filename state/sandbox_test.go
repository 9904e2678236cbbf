package state

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ursb/ursb/spec"
)

func TestCheckName(t *testing.T) {
	for _, name := range []string{"a", "web", "Build-2.x_1", "0", strings.Repeat("n", 63)} {
		if err := CheckName(name); err != nil {
			t.Errorf("CheckName(%q) = %v, want it accepted", name, err)
		}
	}
	for _, name := range []string{"", "-a", ".a", "_a", "a/b", "a b", "..", "ü", "a\x00", strings.Repeat("n", 64)} {
		if err := CheckName(name); err == nil {
			t.Errorf("CheckName(%q) accepted an invalid name", name)
		}
	}
}

func TestNewIDIsFreshHex(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := NewID()
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Fatalf("NewID() = %q, want 32 hex digits", id)
		}
		if seen[id] {
			t.Fatalf("NewID() returned %q twice", id)
		}
		seen[id] = true
	}
}

func TestRenameMovesTheNetLog(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	st, err := Named("old", true)
	if err != nil {
		t.Fatal(err)
	}
	log, err := NetLogPath("old")
	if err != nil {
		t.Fatal(err)
	}
	rec := &Record{ID: "0123", Name: "old", Spec: &spec.Spec{Name: "old", Network: spec.Network{Allow: []string{"example.org"}, DeniedLog: log}}}
	data, _ := json.Marshal(rec)
	if err := os.WriteFile(filepath.Join(st.Dir, recordFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	st.Unlock()
	if err := Rename("old", "new"); err != nil {
		t.Fatal(err)
	}
	want, _ := NetLogPath("new")
	r, err := readRecord(filepath.Join(filepath.Dir(st.Dir), "new", recordFile))
	if err != nil || r.Spec.Network.DeniedLog != want {
		t.Errorf("after rename the log is %q (%v), want %q", r.Spec.Network.DeniedLog, err, want)
	}
}

// A created sandbox shows as created until a run writes a record of its
// own; a run whose ursb died before it recorded the end stays unknown,
// started or not.
func TestStatusCreated(t *testing.T) {
	code := 0
	for _, c := range []struct {
		e    Entry
		want string
	}{
		{Entry{Record: Record{Pending: true}}, StatusCreated},
		{Entry{Record: Record{}}, StatusUnknown},
		{Entry{Record: Record{ExitCode: &code}}, StatusExited},
		{Entry{Record: Record{}, Running: true}, StatusRunning},
	} {
		if got := c.e.Status(); got != c.want {
			t.Errorf("%+v: %s, want %s", c.e.Record, got, c.want)
		}
	}
}
