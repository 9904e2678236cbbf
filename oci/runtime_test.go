package oci

import (
	"os"
	"os/exec"
	"slices"
	"testing"
)

// children finds a process's children by their parent in /proc.
func TestChildren(t *testing.T) {
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	if got := children(os.Getpid()); !slices.Contains(got, cmd.Process.Pid) {
		t.Errorf("children(%d) = %v, without %d", os.Getpid(), got, cmd.Process.Pid)
	}
}
