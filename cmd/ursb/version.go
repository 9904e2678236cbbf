package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/willabides/kongplete"
)

type versionCmd struct{}

// Run prints what ursb --version prints.
func (versionCmd) Run() error {
	fmt.Print(versionText())
	return nil
}

// versionText says which ursb this is: the module version (or "devel"
// for a build from a checkout), the commit it was built from, the Go
// version and the build tags.
func versionText() string {
	version, commit, tags := "devel", "unknown", "none"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return fmt.Sprintf("ursb version %s\n", version)
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		version = v
	}
	var modified bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		case "-tags":
			if s.Value != "" {
				tags = s.Value
			}
		}
	}
	if modified {
		commit += " (with uncommitted changes)"
	}
	return fmt.Sprintf("ursb version %s\ncommit: %s\ngo: %s\nbuild tags: %s\n", version, commit, bi.GoVersion, tags)
}

type helpCmd struct {
	Command []string `arg:"" optional:"" name:"COMMAND" help:"The command to explain."`
}

// Run prints the help of ursb or of one of its commands, as COMMAND
// --help does.
func (h *helpCmd) Run(ctx *kong.Context) error {
	_, err := ctx.Kong.Parse(append(h.Command, "--help"))
	return err
}

type completionCmd struct {
	Shell string `arg:"" enum:"bash,zsh,fish" help:"The shell: bash, zsh or fish."`
}

// Run prints the shell code that completes ursb's commands and flags:
// the shell asks ursb itself, with the line typed so far in COMP_LINE.
func (c *completionCmd) Run() error {
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	q := "'" + strings.ReplaceAll(bin, "'", `'\''`) + "'"
	switch c.Shell {
	case "bash":
		fmt.Printf("complete -o default -C %s ursb\n", q)
	case "zsh":
		fmt.Printf("autoload -U +X bashcompinit && bashcompinit\ncomplete -o default -C %s ursb\n", q)
	case "fish":
		fmt.Printf(`function __ursb_complete
    set -lx COMP_LINE (commandline -cp)
    test -z (commandline -ct); and set COMP_LINE "$COMP_LINE "
    %s
end
complete -c ursb -f -a '(__ursb_complete)'
`, q)
	}
	return nil
}

// completeIfAsked answers a shell's completion request (COMP_LINE set,
// see completionCmd) and exits; otherwise it returns at once.
func completeIfAsked() {
	if os.Getenv("COMP_LINE") == "" {
		return
	}
	parser, err := kong.New(&cli{}, kong.Name("ursb"), kong.Vars{"version": ""})
	if err != nil {
		os.Exit(1)
	}
	kongplete.Complete(parser)
}
