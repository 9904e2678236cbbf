package main

import (
	"fmt"
	"os"
)

// storageTool runs as root of a user namespace with the caller's mapping
// (see userns.AsRoot), where every file a sandbox made belongs to a mapped
// id.
func storageTool(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("storage tool: no operation")
	}
	switch args[0] {
	case "rm":
		for _, dir := range args[1:] {
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("storage tool: unknown operation %q", args[0])
}
