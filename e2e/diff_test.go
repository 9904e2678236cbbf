package e2e

import (
	"archive/tar"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDiffOutputReplacesPlantedSymlink: the sandbox plants a symlink in
// its volume at the path the user will give to --output, pointing at a
// host file. ursb diff must put a real tar there and leave that file be.
func TestDiffOutputReplacesPlantedSymlink(t *testing.T) {
	requireUnprivileged(t)
	t.Parallel()
	l := newLab(t)
	host := t.TempDir()
	vol := filepath.Join(host, "vol")
	sentinel := filepath.Join(host, "sentinel")
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sentinel, []byte("the user's own\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l.track("dplant")
	l.must(append([]string{"run", "--name", "dplant", "-v", vol + ":/vol"}, lifeBase(busyboxRootfs(t),
		"--", "sh", "-c", "echo made > /made && ln -s "+sentinel+" /vol/changes.tar")...)...)

	out := filepath.Join(vol, "changes.tar")
	// The probe: the link is there and really leads to the sentinel, so a
	// write through it would change the sentinel.
	if target, err := os.Readlink(out); err != nil || target != sentinel {
		t.Fatalf("the sandbox's link: %q, %v; want it to point at %s", target, err, sentinel)
	}
	if got := readFile(t, out); got != "the user's own\n" {
		t.Fatalf("reading through the planted link gave %q, not the sentinel", got)
	}

	l.must("diff", "--output", out, "dplant")
	if got := readFile(t, sentinel); got != "the user's own\n" {
		t.Errorf("ursb diff --output wrote through the planted symlink: the sentinel now holds %q", got)
	}
	if fi, err := os.Lstat(out); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("--output is not a regular file: %v", err)
	}
	if e, ok := readTar(t, out)["made"]; !ok || e.Type != tar.TypeReg || e.Content != "made\n" {
		t.Errorf("the tar at --output lacks the sandbox's /made: %+v", e)
	}
	entries, err := os.ReadDir(vol)
	if err != nil || len(entries) != 1 {
		t.Errorf("the volume holds %d entries, want only changes.tar (no temporary file left): %v", len(entries), err)
	}
}

// TestDiffEscapesNames: a name the sandbox made with an escape sequence
// and a newline (which would forge a line of its own) reaches the caller
// shown with '?', and the JSON form gives it back exactly.
func TestDiffEscapesNames(t *testing.T) {
	requireUnprivileged(t)
	t.Parallel()
	l := newLab(t)
	l.track("dname")
	l.must(append([]string{"run", "--name", "dname"}, lifeBase(busyboxRootfs(t),
		"--", "sh", "-c", `d="$(printf '/tmp/\033[31mred\nD ')" && mkdir -p "$d/etc" && touch "$d/etc/passwd"`)...)...)

	// Raw, the last name would print as a red "A /tmp/red" line and a
	// forged "D /etc/passwd".
	text := l.must("diff", "dname").Stdout
	if strings.ContainsAny(text, "\x1b") {
		t.Errorf("ursb diff printed a raw escape: %q", text)
	}
	if want := "C /tmp\nA /tmp/?[31mred?D \nA /tmp/?[31mred?D /etc\nA /tmp/?[31mred?D /etc/passwd\n"; text != want {
		t.Errorf("ursb diff printed %q, want %q", text, want)
	}

	raw := l.must("diff", "--format", "json", "dname").Stdout
	if strings.ContainsAny(raw, "\x1b") {
		t.Errorf("ursb diff --format json printed a raw escape: %q", raw)
	}
	var js map[string][]string
	if err := json.Unmarshal([]byte(raw), &js); err != nil {
		t.Fatalf("ursb diff --format json: %v: %q", err, raw)
	}
	if added := js["added"]; len(added) != 3 || added[2] != "/tmp/\x1b[31mred\nD /etc/passwd" {
		t.Errorf("the JSON form's added names are %q, want the name exactly", added)
	}
}
