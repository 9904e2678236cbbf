package sandbox

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/state"
	"github.com/ursb/ursb/userns"
)

// DefaultStopTimeout is how long Stop waits after the stop signal when
// neither the caller nor the sandbox's spec says, as with podman.
const DefaultStopTimeout = 10 * time.Second

// StopTimeout is the grace period of e: given, else the sandbox's
// --stop-timeout, else DefaultStopTimeout.
func StopTimeout(e *state.Entry, given *int) time.Duration {
	grace := DefaultStopTimeout
	if e.Spec != nil && e.Spec.StopTimeout != nil {
		grace = time.Duration(*e.Spec.StopTimeout) * time.Second
	}
	if given != nil {
		grace = time.Duration(*given) * time.Second
	}
	return grace
}

// Stop ends a running sandbox and returns once it has exited.
func Stop(e *state.Entry, grace time.Duration) error {
	if !e.Running {
		return nil
	}
	if grace > 0 {
		sig := unix.SIGTERM
		if e.Spec != nil && e.Spec.StopSignal != 0 {
			sig = unix.Signal(e.Spec.StopSignal)
		}
		if err := userns.SignalSandbox(e.ControlSocket(), sig); err != nil {
			return nil // it ended meanwhile
		}
		if WaitExit(e, grace) {
			return nil
		}
	}
	_ = userns.SignalSandbox(e.ControlSocket(), unix.SIGKILL)
	if !WaitExit(e, 30*time.Second) {
		return fmt.Errorf("sandbox %s did not exit after SIGKILL", DisplayName(e))
	}
	return nil
}

// WaitExit waits until the run's ursb lets go of it, which it does once
// the sandbox has exited and its exit is recorded.
func WaitExit(e *state.Entry, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		if !state.Held(e.RunDir) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(delay)
	}
}

// Kill sends sig to the command of the running sandbox called name;
// SIGKILL ends the whole sandbox.
func Kill(name string, sig unix.Signal) error {
	e, err := FindRunning(name)
	if err != nil {
		return err
	}
	return userns.SignalSandbox(e.ControlSocket(), sig)
}

// ParseSignal reads a signal by name (TERM, SIGTERM, term) or number.
func ParseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q; use a name like TERM or a number", s)
}

// FindRunning finds the sandbox called name, which must be running.
func FindRunning(name string) (*state.Entry, error) {
	e, err := state.Find(name)
	if err != nil {
		return nil, err
	}
	if !e.Running || e.Spec == nil {
		return nil, fmt.Errorf("sandbox %s is not running; start it with 'ursb start %s'", name, name)
	}
	return e, nil
}

// DisplayName is how messages name e: its name, else its short id.
func DisplayName(e *state.Entry) string {
	if e.Name != "" {
		return e.Name
	}
	return e.ID[:12]
}
