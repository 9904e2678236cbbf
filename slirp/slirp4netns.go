package slirp

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	s4port "github.com/rootless-containers/rootlesskit/v3/pkg/port/slirp4netns"
)

// slirp4netnsSocket is the name of slirp4netns's API socket in the state
// directory; the sandbox could publish ports through it, so it must stay
// out of the sandbox's reach.
const slirp4netnsSocket = "slirp4netns.sock"

// slirp4netnsArgs is slirp4netns's command line for the sandbox whose init
// is childPID. fd 3 is the ready pipe, fd 4 the exit pipe.
func slirp4netnsArgs(childPID int, o Options) []string {
	args := []string{
		// slirp4netns creates and configures tap0 itself, so neither
		// ursb nor the sandbox runs ip(8) inside the namespace.
		"--configure",
		"--mtu=" + strconv.Itoa(o.MTU),
		"--cidr=" + Subnet,
		// Its own mount namespace and seccomp filter: a bug in libslirp
		// reached from the sandbox lands in a process that can do little.
		"--enable-sandbox",
		"--enable-seccomp",
		"--ready-fd=3",
		// It exits once the write end, held only by ursb, closes.
		"--exit-fd=4",
	}
	if !o.AllowHostLoopback {
		args = append(args, "--disable-host-loopback")
	}
	if len(o.Publish) > 0 {
		// Relative to the helper's working directory, the state
		// directory: an absolute path may be longer than sun_path.
		args = append(args, "--api-socket="+slirp4netnsSocket)
	}
	return append(args, strconv.Itoa(childPID), Device)
}

// slirp4netnsNet is a sandbox network served by slirp4netns.
type slirp4netnsNet struct {
	h     *helper
	exitW *os.File
	cfg   ChildConfig
	pub   *publisher
	done  chan struct{}
	err   error
}

func startSlirp4netns(childPID int, o Options) (driver, error) {
	path, err := lookPath("slirp4netns")
	if err != nil {
		return nil, fmt.Errorf("slirp4netns is not installed: install the slirp4netns package, or use --net pasta or builtin")
	}
	if o.StateDir == "" {
		return nil, fmt.Errorf("slirp4netns needs a state directory")
	}
	var pipes [4]*os.File
	closeAll := func() {
		for _, f := range pipes {
			if f != nil {
				f.Close()
			}
		}
	}
	if pipes[0], pipes[1], err = os.Pipe(); err != nil {
		return nil, err
	}
	if pipes[2], pipes[3], err = os.Pipe(); err != nil {
		closeAll()
		return nil, err
	}
	readyR, readyW, exitR, exitW := pipes[0], pipes[1], pipes[2], pipes[3]
	if len(o.Publish) > 0 {
		_ = os.Remove(filepath.Join(o.StateDir, slirp4netnsSocket))
	}
	s := &slirp4netnsNet{exitW: exitW, cfg: layout(o), done: make(chan struct{})}
	s.h = startHelper("slirp4netns", path, slirp4netnsArgs(childPID, o), o.StateDir, []*os.File{readyW, exitR})
	go func() {
		defer close(s.done)
		_ = s.h.startError()
		readyW.Close()
		exitR.Close()
		if s.err = s.h.waitReady(readyR); s.err != nil {
			return
		}
		if len(o.Publish) > 0 {
			s.pub, s.err = s.publish(o)
		}
	}()
	return s, nil
}

// publish adds o.Publish through slirp4netns's API socket with rootlesskit's
// port driver.
func (s *slirp4netnsNet) publish(o Options) (*publisher, error) {
	dir, err := unix.Open(o.StateDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the state directory: %v", err)
	}
	// The directory stays open while the driver may dial the socket
	// through it; the driver dials only while ports are added or removed.
	sock := fmt.Sprintf("/proc/self/fd/%d/%s", dir, slirp4netnsSocket)
	d, err := s4port.NewParentDriver(io.Discard, sock)
	if err != nil {
		unix.Close(dir)
		return nil, err
	}
	p, err := startPublisher(d, nil, o.Publish, func() { unix.Close(dir) })
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (s *slirp4netnsNet) ready() (ChildConfig, error) {
	<-s.done
	return s.cfg, s.err
}

func (s *slirp4netnsNet) attachTap(f *os.File) error {
	f.Close()
	return fmt.Errorf("slirp4netns creates the sandbox's interface itself")
}

func (s *slirp4netnsNet) close() error {
	s.exitW.Close()
	s.h.stop()
	<-s.done // quick: the helper was killed, so waitReady has returned
	// slirp4netns took its forwards with it: nothing to remove one by
	// one through its API.
	if s.pub != nil {
		s.pub.stopDriver()
	}
	return nil
}
