package userns

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/slirp"
	"github.com/ursb/ursb/spec"
)

// The sandbox's network, in three places of the start sequence:
//
//  1. The parent starts the driver right after the id maps are written, and
//     writes the sandbox's /etc/hosts and /etc/resolv.conf into the run's
//     private directory; a helper then gets ready while init mounts.
//  2. Init copies those files into a tmpfs of the sandbox's own and
//     bind-mounts the copies over the root's before the volumes (so a
//     volume on them wins) and, just before pivot_root, waits for the
//     parent's msgNet and finishes the interface; the builtin driver's tap
//     is created there and handed back, and init waits for msgNetUp.
//  3. The parent closes the driver as soon as init exits.

// netFiles are the files ursb writes for the sandbox, by their path inside;
// the parent writes them in the run's directory, beside the stage.
var netFiles = []struct{ inside, name string }{
	{"/etc/hosts", "hosts"},
	{"/etc/resolv.conf", "resolv.conf"},
}

// runDir is the private directory of this run, which holds the stage. The
// sandbox cannot see it (its root hides ursb's runtime directory), so the
// helpers' sockets are out of its reach there.
func runDir(stage string) string { return filepath.Dir(stage) }

// sandboxNet is the parent's side of the sandbox's network.
type sandboxNet struct {
	n *slirp.Network
	// closed is set once init has exited: what fails after that is a
	// consequence, not a cause.
	closed atomic.Bool
	// tapped is set once the builtin driver's tap has arrived.
	tapped atomic.Bool
	// failed is why the network failed while init waited for it.
	failed atomic.Pointer[error]
}

// startNetwork starts the network of the sandbox whose init is pid and
// writes the sandbox's files; it does not wait for a helper.
func (sb *Sandbox) startNetwork(pid int) error {
	s := sb.spec
	dir := runDir(sb.opts.Stage)
	var echo io.Writer
	if !sb.opts.LongLived && sb.opts.Stderr != nil {
		// A build failing in the foreground for a missing rule says
		// which host it tried, where its own errors go.
		echo = sb.opts.Stderr
	}
	n, err := slirp.Start(pid, slirp.Options{
		Mode:              string(s.Network.Mode),
		AllowHostLoopback: s.Network.AllowHostLoopback,
		MTU:               s.Network.MTU,
		Publish:           s.Network.Publish,
		StateDir:          dir,
		Hostname:          s.Hostname,
		Allow:             s.Network.Allow,
		AllowDNS:          s.Network.AllowDNS,
		DeniedLog:         s.Network.DeniedLog,
		DeniedEcho:        echo,
	})
	if err != nil {
		return fmt.Errorf("starting the network: %w", err)
	}
	sb.net = &sandboxNet{n: n}
	if s.Network.Mode.Host() {
		// The host's network, and the host's files to go with it.
		return nil
	}
	return sb.writeNetFiles(n.Planned())
}

// joinNetwork writes the files of a sandbox joining one under egress
// rules: the host's resolv.conf names servers those rules refuse, and
// only the network's own DNS answers allowed names.
func (sb *Sandbox) joinNetwork() error {
	if len(sb.spec.Network.Allow) == 0 {
		return nil
	}
	return sb.writeNetFiles(slirp.Layout(slirp.Options{Mode: slirp.ModeBuiltin}))
}

// writeNetFiles writes the sandbox's /etc/hosts and /etc/resolv.conf for
// a network laid out as c.
func (sb *Sandbox) writeNetFiles(c slirp.ChildConfig) error {
	s, dir := sb.spec, runDir(sb.opts.Stage)
	for _, f := range netFiles {
		var data []byte
		switch f.name {
		case "hosts":
			data = slirp.Hosts(c, s.Hostname, s.Network.Hosts)
		case "resolv.conf":
			data = slirp.ResolvConf(c, s.Network.DNS)
		}
		if data == nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, f.name), data, 0o644); err != nil {
			return fmt.Errorf("writing the sandbox's %s: %w", f.inside, err)
		}
	}
	return nil
}

// awaitNetwork tells init how to finish its network once the driver is
// ready; when it cannot get ready the sandbox ends.
func (sb *Sandbox) awaitNetwork(pid int) {
	if !sb.spec.Network.Mode.UserMode() {
		return
	}
	c, err := sb.net.n.Ready()
	if err == nil {
		err = sb.ch.send(syncMsg{Kind: msgNet, Net: &c})
	}
	if err != nil {
		sb.netFailed(pid, err)
	}
}

// attachTap gives the builtin driver the tap init created, then lets init
// go on.
func (sb *Sandbox) attachTap(pid int, fds []int) {
	if len(fds) != 1 || sb.net == nil || !sb.net.tapped.CompareAndSwap(false, true) {
		closeAll(fds)
		sb.netFailed(pid, errors.New("unexpected tap from the sandbox"))
		return
	}
	err := sb.net.n.AttachTap(os.NewFile(uintptr(fds[0]), "tap"))
	if err == nil {
		err = sb.ch.send(syncMsg{Kind: msgNetUp})
	}
	if err != nil {
		sb.netFailed(pid, err)
	}
}

// netFailed ends a sandbox whose network failed before its command ran.
// The failure is reported by stopNetwork unless init reported one of its
// own: init may have ended first, and the network failed because of it.
func (sb *Sandbox) netFailed(pid int, err error) {
	if sb.net.closed.Load() || !sb.net.failed.CompareAndSwap(nil, &err) {
		return
	}
	_ = unix.Kill(pid, unix.SIGKILL)
}

// stopNetwork ends the driver once init has exited and everything it said
// has been read.
func (sb *Sandbox) stopNetwork() {
	if sb.net == nil || sb.net.closed.Swap(true) {
		return
	}
	_ = sb.net.n.Close()
	if err := sb.net.failed.Load(); err != nil {
		sb.fail(125, fmt.Sprintf("starting the network: %v", *err))
	}
}

// netFilesTmpfs holds the sandbox's copies of its network files. The sandbox
// may write them, as podman's may, but what it writes must stay its own and
// be bounded: bound from the run's directory, they were ursb's files, and a
// sandbox could fill the user's runtime directory through them.
const (
	netFilesTmpfs = "size=1m,mode=755"
	// netFilesStage is where the tmpfs is mounted while the copies are
	// made, in the sandbox's fresh /dev; it is gone before the command
	// starts.
	netFilesStage = ".ursb-net"
)

// networkFiles copies the files the parent wrote into a tmpfs of the
// sandbox's own and bind-mounts the copies over the root's /etc/hosts and
// /etc/resolv.conf. The root is never written through: the targets are
// resolved inside it, and one that is missing is created in the
// copy-on-write layer or in the sandbox's own /run.
func (r *rootfs) networkFiles(s *spec.Spec, stage string) []step {
	// An OCI bundle's root is written in place, and its engine mounts
	// the files it wants there itself.
	if s.Network.Mode.Host() || s.Root.Overlay == spec.RootBind {
		return nil
	}
	return []step{{"mounting /etc/hosts and /etc/resolv.conf", func() error {
		var tmp *netFilesDir
		defer func() { _ = tmp.close() }()
		for _, f := range netFiles {
			data, err := os.ReadFile(filepath.Join(runDir(stage), f.name))
			if errors.Is(err, os.ErrNotExist) {
				continue // the root's own file stays
			}
			if err == nil && tmp == nil {
				tmp, err = r.openNetFilesDir()
			}
			var src *os.File
			if err == nil {
				src, err = tmp.write(f.name, data)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", f.inside, err)
			}
			dst, err := r.fileThroughLinks(f.inside)
			if err == nil {
				err = unix.Mount(fdPath(src), fdPath(dst), "", unix.MS_BIND, "")
				dst.Close()
			}
			src.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", f.inside, err)
			}
		}
		return tmp.close()
	}}}
}

// netFilesDir is the tmpfs for the network files while it is mounted on
// the stage directory in /dev.
type netFilesDir struct {
	dev, root *os.File
}

// openNetFilesDir mounts the tmpfs for the network files on a directory of
// /dev, a tmpfs ursb mounted, so nothing of the root lies in the way.
func (r *rootfs) openNetFilesDir() (*netFilesDir, error) {
	dev, err := r.openIn("/dev", unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	const flags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	err = mountOn(int(dev.Fd()), netFilesStage, true, "tmpfs", "tmpfs", flags, netFilesTmpfs)
	if err != nil {
		dev.Close()
		return nil, err
	}
	d := &netFilesDir{dev: dev}
	fd, err := unix.Openat(int(dev.Fd()), netFilesStage, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		_ = d.close()
		return nil, err
	}
	d.root = os.NewFile(uintptr(fd), netFilesStage)
	return d, nil
}

// write makes the file name holding data and returns an O_PATH handle to it.
func (d *netFilesDir) write(name string, data []byte) (*os.File, error) {
	fd, err := unix.Openat(int(d.root.Fd()), name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	_, err = f.Write(data)
	if err == nil {
		// Readable by every user of the sandbox, whatever ursb's umask.
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	fd, err = unix.Openat(int(d.root.Fd()), name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// close detaches the tmpfs from /dev and removes the stage directory: the
// bind mounts of its files keep it, and no path leads to the rest of it.
// It does nothing on a nil or closed netFilesDir.
func (d *netFilesDir) close() error {
	if d == nil || d.dev == nil {
		return nil
	}
	if d.root != nil {
		d.root.Close()
	}
	err := unix.Unmount(fdPath(d.dev)+"/"+netFilesStage, unix.MNT_DETACH)
	if rerr := unix.Unlinkat(int(d.dev.Fd()), netFilesStage, unix.AT_REMOVEDIR); err == nil {
		err = rerr
	}
	d.dev.Close()
	d.dev = nil
	return err
}

// fileThroughLinks is fileIn for a path that may be a symbolic link to a
// file that does not exist yet, as /etc/resolv.conf often is one into /run:
// the link is followed inside the root and its target created.
func (r *rootfs) fileThroughLinks(path string) (*os.File, error) {
	buf := make([]byte, unix.PathMax)
	for range 16 {
		dir, err := r.dirIn(filepath.Dir(path))
		if err != nil {
			return nil, err
		}
		n, err := unix.Readlinkat(int(dir.Fd()), filepath.Base(path), buf)
		dir.Close()
		if err != nil {
			// Not a link, or nothing there yet.
			return r.fileIn(path)
		}
		target := string(buf[:n])
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		path = filepath.Clean("/" + target)
	}
	return nil, fmt.Errorf("%s: %w", path, unix.ELOOP)
}

// networkUp is init's last network step before pivot_root: lo alone, or the
// user-mode network once the parent says it is ready.
func networkUp(s *spec.Spec, ch syncChannel) []step {
	switch {
	case s.Network.Mode.Host():
		return nil
	case !s.Network.Mode.UserMode():
		return []step{{"bringing up the loopback interface", slirp.LoopbackUp}}
	}
	return []step{{"starting the network", func() error {
		m, fds, err := ch.recv()
		closeAll(fds)
		if err != nil {
			return err
		}
		if m.Kind != msgNet || m.Net == nil {
			return fmt.Errorf("unexpected %q message from ursb", m.Kind)
		}
		tap, err := slirp.ConfigureChild(*m.Net)
		if err != nil || tap == nil {
			return err
		}
		err = ch.send(syncMsg{Kind: msgTap}, int(tap.Fd()))
		tap.Close()
		if err != nil {
			return err
		}
		if m, fds, err = ch.recv(); err != nil {
			return err
		}
		closeAll(fds)
		if m.Kind != msgNetUp {
			return fmt.Errorf("unexpected %q message from ursb", m.Kind)
		}
		return nil
	}}}
}
