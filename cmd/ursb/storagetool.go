package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/ursb/ursb/fuseoverlay"
	"github.com/ursb/ursb/image"
	"github.com/ursb/ursb/internal/tarcopy"
	"github.com/ursb/ursb/userns"
)

// storageTool runs as root of a user namespace with the caller's mapping
// (see userns.AsRoot), where every file a sandbox made belongs to a mapped
// id.
func storageTool(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("storage tool: no operation")
	}
	switch args[0] {
	case userns.UnshareOp:
		return unshareExec(args[1:])
	case image.UnpackOp:
		return image.UnpackTool(args[1:], os.Stdin)
	case image.FlattenOp:
		return image.FlattenTool(args[1:], os.Stdout)
	case image.DiffOp:
		out := bufio.NewWriterSize(os.Stdout, 1<<16)
		if err := image.DiffTool(args[1:], out); err != nil {
			return err
		}
		return out.Flush()
	case "rm":
		for _, dir := range args[1:] {
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
		}
		return nil
	case "cp":
		lowers, rest, err := lowersArg(args[1:])
		if err != nil || len(rest) < 2 {
			return fmt.Errorf("storage tool: cp wants lowers, an upper, a work directory and the copy")
		}
		if err := userns.EnterStored(lowers, rest[0], rest[1]); err != nil {
			return err
		}
		warn := func(msg string) { fmt.Fprintln(os.Stderr, "warning:", msg) }
		return tarcopy.Serve(rest[2:], os.Stdin, os.Stdout, warn)
	case "diff":
		if len(args) < 3 {
			return fmt.Errorf("storage tool: diff wants a format, an upper, lowers and mount points")
		}
		lowers, mountpoints, err := lowersArg(args[3:])
		if err != nil {
			return fmt.Errorf("storage tool: diff wants a format, an upper, lowers and mount points")
		}
		if err := userns.MergeLowers(lowers); err != nil {
			return err
		}
		layers, err := fuseoverlay.StoredLayers(args[2], lowers[len(lowers)-1])
		if err != nil {
			return err
		}
		out := bufio.NewWriterSize(os.Stdout, 1<<16)
		switch args[1] {
		case "tar":
			err = fuseoverlay.WriteTarExcept(out, mountpoints, layers...)
		case "json", "text":
			var changes []fuseoverlay.Change
			if changes, err = fuseoverlay.ChangesExcept(mountpoints, layers...); err != nil {
				return err
			}
			if args[1] == "json" {
				err = fuseoverlay.WriteJSON(out, changes)
			} else {
				err = fuseoverlay.WriteText(out, changes)
			}
		}
		if err != nil {
			return err
		}
		return out.Flush()
	}
	return fmt.Errorf("storage tool: unknown operation %q", args[0])
}

// lowersArgs is how the storage tool is given a stopped sandbox's lower
// trees, topmost first: their count, then each ("" for the host's /).
func lowersArgs(lowers []string) []string {
	return append([]string{strconv.Itoa(len(lowers))}, lowers...)
}

// lowersArg reads what lowersArgs wrote at the start of args and returns
// the lowers and the arguments after them.
func lowersArg(args []string) ([]string, []string, error) {
	if len(args) == 0 {
		return nil, nil, errors.New("no lowers")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 || n > len(args)-1 {
		return nil, nil, errors.New("bad lowers")
	}
	return args[1 : 1+n], args[1+n:], nil
}
