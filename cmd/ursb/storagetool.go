package main

import (
	"bufio"
	"fmt"
	"os"

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
		if len(args) < 4 {
			return fmt.Errorf("storage tool: cp wants a lower, an upper, a work directory and the copy")
		}
		if err := userns.EnterStored(args[1], args[2], args[3]); err != nil {
			return err
		}
		warn := func(msg string) { fmt.Fprintln(os.Stderr, "warning:", msg) }
		return tarcopy.Serve(args[4:], os.Stdin, os.Stdout, warn)
	case "diff":
		if len(args) < 4 {
			return fmt.Errorf("storage tool: diff wants a format, an upper, a rootfs and mount points")
		}
		mountpoints := args[4:]
		layers, err := fuseoverlay.StoredLayers(args[2], args[3])
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
