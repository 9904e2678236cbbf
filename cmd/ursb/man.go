package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/alecthomas/kong"
)

type manCmd struct{}

// Run prints ursb's manual page, in roff, made from the same command and
// flag descriptions as --help: ursb man > ursb.1; man -l ursb.1
func (manCmd) Run(ctx *kong.Context) error {
	writeMan(ctx.Stdout, ctx.Model)
	return nil
}

// writeMan writes the manual page of app: its synopsis, then each visible
// command with its arguments and flags.
func writeMan(w io.Writer, app *kong.Application) {
	fmt.Fprintf(w, ".TH URSB 1 \"\" \"ursb\" \"User Commands\"\n")
	fmt.Fprintf(w, ".SH NAME\nursb \\- %s\n", roff(app.Help))
	fmt.Fprintf(w, ".SH SYNOPSIS\n.B ursb\n.I COMMAND\n[\\fIFLAGS\\fR] [\\fIARG\\fR...]\n")
	fmt.Fprintf(w, ".SH GLOBAL FLAGS\n")
	writeFlags(w, app.Flags)
	fmt.Fprintf(w, ".SH COMMANDS\n")
	for _, n := range app.Leaves(true) {
		fmt.Fprintf(w, ".SS %s\n", roff(n.Summary()))
		fmt.Fprintf(w, "%s\n", roff(n.Help))
		if n.Detail != "" {
			fmt.Fprintf(w, ".PP\n%s\n", roff(n.Detail))
		}
		for _, p := range n.Positional {
			fmt.Fprintf(w, ".TP\n.I %s\n%s\n", roff(p.Summary()), roff(p.Help))
		}
		writeFlags(w, n.Flags)
	}
	fmt.Fprintf(w, ".SH EXIT STATUS\nThe command's own; 125 when ursb itself fails (the reason on standard error); 126 when the command cannot be executed; 127 when it is not found; 128+N when a signal N killed it.\n")
	fmt.Fprintf(w, ".SH SEE ALSO\n.BR podman (1),\n.BR bwrap (1),\n.BR user_namespaces (7)\n")
}

// writeFlags writes one tagged paragraph per visible flag.
func writeFlags(w io.Writer, flags []*kong.Flag) {
	for _, f := range flags {
		if f.Hidden {
			continue
		}
		name := "\\-\\-" + roff(f.Name)
		if f.Short != 0 {
			name = "\\-" + string(f.Short) + ", " + name
		}
		if !f.IsBool() {
			name += " " + roff(f.FormatPlaceHolder())
		}
		help := f.Help
		if f.HasDefault && f.Default != "" {
			help += " (default: " + f.Default + ")"
		}
		fmt.Fprintf(w, ".TP\n.B %s\n%s\n", name, roff(help))
	}
}

// roff escapes text for a roff line: backslashes, and a leading dot or
// quote that would make it a request.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			l = `\&` + l
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n")
}
