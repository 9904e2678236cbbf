package fakesystemd

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ErrNoDaemon is returned by StartBus when dbus-daemon is not installed.
var ErrNoDaemon = errors.New("dbus-daemon is not installed (Debian package dbus-daemon)")

// Bus is a private message bus: a dbus-daemon of the caller's own,
// listening on a socket in a directory the test chose.
type Bus struct {
	// Addr is the bus address, as DBUS_SESSION_BUS_ADDRESS holds it.
	Addr string
	cmd  *exec.Cmd
}

// busConfig is a session bus that lets its one user do anything: the
// policy of a session bus, with nothing activatable.
const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`

// StartBus starts dbus-daemon with its socket and configuration in dir,
// which must be short enough for a socket path (about 100 bytes), and
// returns once it accepts connections.
func StartBus(dir string) (*Bus, error) {
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		return nil, ErrNoDaemon
	}
	sock := filepath.Join(dir, "bus")
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, busConfig, sock), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(daemon, "--config-file="+conf, "--nofork", "--print-address=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting dbus-daemon: %v", err)
	}
	// The address is printed once the socket listens.
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case addr := <-line:
		if addr != "" {
			return &Bus{Addr: addr, cmd: cmd}, nil
		}
	case <-time.After(10 * time.Second):
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return nil, fmt.Errorf("dbus-daemon did not start: %s", strings.TrimSpace(stderr.String()))
}

// Close stops the daemon.
func (b *Bus) Close() {
	_ = b.cmd.Process.Kill()
	_ = b.cmd.Wait()
}
