package tarcopy

import (
	"fmt"
	"io"
)

// Serve does the sandbox's side of one ursb cp in the sandbox's tree, the
// caller's root: "out PATH TOP" archives PATH to out, "in DEST CONTENTS"
// extracts in at DEST, and "in-all DIR" extracts an arbitrary tar stream
// into DIR. warn is told of each entry left out. What comes in keeps its
// set-id bits, as with podman cp: the sandbox's root may set them anyway.
func Serve(args []string, in io.Reader, out io.Writer, warn func(string)) error {
	switch {
	case len(args) == 3 && args[0] == "out":
		return Write(out, args[1], args[2], warn)
	case len(args) == 3 && args[0] == "in":
		return Extract(in, args[1], Options{Contents: args[2] == "true", KeepSetID: true, Warn: warn})
	case len(args) == 2 && args[0] == "in-all":
		return ExtractAll(in, args[1], Options{KeepSetID: true, Warn: warn})
	}
	return fmt.Errorf("copy request with bad arguments %q", args)
}
