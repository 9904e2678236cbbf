package userns

import (
	"slices"
	"testing"

	"github.com/moby/sys/capability"
)

// Capabilities are found by their full names only, and those past the
// kernel's last are left out rather than handed to capset or prctl, which
// would refuse them.
func TestCapNumbers(t *testing.T) {
	got := capNumbers([]string{"CAP_KILL", "CAP_CHOWN", "KILL", "CAP_BOGUS", "CAP_CHECKPOINT_RESTORE"}, capability.CAP_SYS_ADMIN)
	want := []uintptr{uintptr(capability.CAP_CHOWN), uintptr(capability.CAP_KILL)}
	if !slices.Equal(got, want) {
		t.Errorf("capNumbers = %v, want %v", got, want)
	}
}
