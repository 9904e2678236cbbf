package sandbox

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/spec"
	"github.com/ursb/ursb/state"
)

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]unix.Signal{"TERM": unix.SIGTERM, "sigusr1": unix.SIGUSR1, "SIGKILL": unix.SIGKILL, "9": unix.SIGKILL, "64": 64} {
		if got, err := ParseSignal(in); err != nil || got != want {
			t.Errorf("%q: got %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "65", "-1", "NOPE", "SIG"} {
		if _, err := ParseSignal(in); err == nil {
			t.Errorf("%q: accepted", in)
		}
	}
}

// The grace period: what the caller gives, else the sandbox's own, else
// podman's 10 s.
func TestStopTimeout(t *testing.T) {
	three, zero := uint(3), 0
	own := &state.Entry{Record: state.Record{Spec: &spec.Spec{StopTimeout: &three}}}
	bare := &state.Entry{Record: state.Record{Spec: &spec.Spec{}}}
	for _, c := range []struct {
		e     *state.Entry
		given *int
		want  time.Duration
	}{
		{bare, nil, 10 * time.Second},
		{&state.Entry{}, nil, 10 * time.Second},
		{own, nil, 3 * time.Second},
		{own, &zero, 0},
	} {
		if got := StopTimeout(c.e, c.given); got != c.want {
			t.Errorf("StopTimeout(%+v, %v) = %v, want %v", c.e.Spec, c.given, got, c.want)
		}
	}
}
