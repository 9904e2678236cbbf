package main

import (
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

// TestManPage: the manual page has every visible command and its flags,
// and no text line that roff would take for a request.
func TestManPage(t *testing.T) {
	parser, err := kong.New(&cli{}, kong.Name("ursb"), kong.Vars{"version": ""},
		kong.Description("A rootless sandbox."))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	writeMan(&b, parser.Model)
	page := b.String()
	for _, n := range parser.Model.Leaves(true) {
		if !strings.Contains(page, ".SS "+roff(n.Summary())+"\n") {
			t.Errorf("command %q is missing from the page", n.Name)
		}
	}
	for _, want := range []string{".TH URSB 1", `.B \-\-rootfs DIR`, `.B \-v, \-\-volume`, ".SH EXIT STATUS"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	requests := map[string]bool{".TH": true, ".SH": true, ".SS": true, ".TP": true, ".B": true, ".I": true, ".PP": true, ".BR": true}
	for _, line := range strings.Split(page, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(line, ".") && !requests[f[0]] {
			t.Errorf("a text line reads as a roff request: %q", line)
		}
	}
}
