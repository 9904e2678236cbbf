package userns

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/spec"
)

// Controller answers exec, signal and wait requests for a running sandbox
// on a unix socket in ursb's private runtime directory.
type Controller struct {
	fd   int
	path string
	wg   sync.WaitGroup

	mu sync.Mutex
	// waiters are told code, what ursb exits with, by Finish; once ended
	// a wait is answered at once.
	waiters []ctlChannel
	ended   bool
	code    int
}

// Serve listens on path for requests about sb. Only the caller's own uid
// may connect; the directory is private to it anyway.
func (sb *Sandbox) Serve(path string) (*Controller, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	err = withShortPath(path, func(name string) error { return unix.Bind(fd, &unix.SockaddrUnix{Name: name}) })
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("creating the control socket: %w", err)
	}
	if err := unix.Listen(fd, 64); err != nil {
		unix.Close(fd)
		return nil, err
	}
	c := &Controller{fd: fd, path: path}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			conn, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
			if err != nil {
				if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) {
					continue
				}
				return
			}
			go sb.answer(c, ctlChannel{os.NewFile(uintptr(conn), "control")})
		}
	}()
	return c, nil
}

// Finish tells every waiter that the sandbox ended with code, then stops
// answering and removes the socket.
func (c *Controller) Finish(code int) {
	c.mu.Lock()
	c.ended, c.code = true, code
	for _, w := range c.waiters {
		_ = w.send(ctlMsg{Kind: ctlExit, Code: code})
		w.f.Close()
	}
	c.waiters = nil
	c.mu.Unlock()
	c.Close()
}

// await answers a wait request on conn now if the sandbox has ended, or
// keeps conn for Finish; it reports whether it kept it.
func (c *Controller) await(conn ctlChannel) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		_ = conn.send(ctlMsg{Kind: ctlExit, Code: c.code})
		return false
	}
	c.waiters = append(c.waiters, conn)
	return true
}

// Close stops answering and removes the socket.
func (c *Controller) Close() {
	_ = unix.Shutdown(c.fd, unix.SHUT_RDWR)
	unix.Close(c.fd)
	c.wg.Wait()
	os.Remove(c.path)
}

func (sb *Sandbox) answer(c *Controller, conn ctlChannel) {
	kept := false
	defer func() {
		if !kept {
			conn.f.Close()
		}
	}()
	cred, err := unix.GetsockoptUcred(int(conn.f.Fd()), unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil || int(cred.Uid) != os.Getuid() {
		return
	}
	m, fds, err := conn.recv()
	if err != nil {
		return
	}
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), "stdio")
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	switch m.Kind {
	case ctlWait:
		kept = c.await(conn)
	case ctlSignal:
		if err := sb.Signal(unix.Signal(m.Signal)); err != nil {
			_ = conn.send(ctlMsg{Kind: ctlExit, Code: 125, Err: err.Error()})
			return
		}
		_ = conn.send(ctlMsg{Kind: ctlOK})
	case ctlExec:
		if m.Exec == nil {
			return
		}
		p, err := sb.Exec(*m.Exec, files)
		if err != nil {
			_ = conn.send(ctlMsg{Kind: ctlExit, Code: 125, Err: err.Error()})
			return
		}
		if m.Exec.Detach {
			if r, ok := p.Started(); ok {
				_ = conn.send(ctlMsg{Kind: ctlOK})
			} else {
				_ = conn.send(ctlMsg{Kind: ctlExit, Code: r.Code, Err: r.Err})
			}
			return
		}
		if m.Exec.TTY {
			if master := p.TTY(); master != nil {
				err := conn.send(ctlMsg{Kind: ctlTTY}, int(master.Fd()))
				master.Close()
				if err != nil {
					_ = p.Signal(unix.SIGKILL)
				}
			}
		}
		// Further messages are signals for the process; the client
		// going away kills it, as a closed terminal would.
		go func() {
			for {
				m, fds, err := conn.recv()
				closeAll(fds)
				if err != nil {
					_ = p.Signal(unix.SIGHUP)
					return
				}
				if m.Kind == ctlSignal {
					_ = p.Signal(unix.Signal(m.Signal))
				}
			}
		}()
		r := p.Wait()
		_ = conn.send(ctlMsg{Kind: ctlExit, Code: r.Code, Err: r.Err})
	}
}

// withShortPath calls do with a name for the socket at path that fits in
// a sockaddr_un (108 bytes): a long path is reached through the
// directory's descriptor in /proc/self/fd.
func withShortPath(path string, do func(name string) error) error {
	if len(path) < 100 {
		return do(path)
	}
	dir, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	return do(fmt.Sprintf("/proc/self/fd/%d/%s", dir, filepath.Base(path)))
}

// dial connects to the control socket of a running sandbox.
func dial(path string) (ctlChannel, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return ctlChannel{}, err
	}
	err = withShortPath(path, func(name string) error { return unix.Connect(fd, &unix.SockaddrUnix{Name: name}) })
	if err != nil {
		unix.Close(fd)
		return ctlChannel{}, fmt.Errorf("the sandbox is not running (%v)", err)
	}
	return ctlChannel{os.NewFile(uintptr(fd), "control")}, nil
}

// SignalSandbox sends sig to the sandbox served on the control socket at
// path: SIGKILL ends it, other signals reach its command.
func SignalSandbox(path string, sig unix.Signal) error {
	conn, err := dial(path)
	if err != nil {
		return err
	}
	defer conn.f.Close()
	if err := conn.send(ctlMsg{Kind: ctlSignal, Signal: int(sig)}); err != nil {
		return err
	}
	m, fds, err := conn.recv()
	closeAll(fds)
	if err != nil {
		return err
	}
	if m.Kind != ctlOK {
		return errors.New(m.Err)
	}
	return nil
}

// WaitSandbox waits until the sandbox served on the control socket at path
// has ended and returns the code its ursb exits with.
func WaitSandbox(path string) (int, error) {
	conn, err := dial(path)
	if err != nil {
		return 0, err
	}
	defer conn.f.Close()
	if err := conn.send(ctlMsg{Kind: ctlWait}); err != nil {
		return 0, err
	}
	m, fds, err := conn.recv()
	closeAll(fds)
	if err != nil {
		return 0, fmt.Errorf("the sandbox's ursb went away without saying how it ended (%v)", err)
	}
	if m.Kind != ctlExit {
		return 0, fmt.Errorf("unexpected answer %q to wait", m.Kind)
	}
	return m.Code, nil
}

// ExecIn runs e in the sandbox served on the control socket at path, with
// the caller's stdio (or a terminal relayed to it for e.TTY), forwarding
// signals, and returns how the process ended.
func ExecIn(path string, e spec.Exec, stdin, stdout, stderr *os.File) (ExecResult, error) {
	conn, err := dial(path)
	if err != nil {
		return ExecResult{}, err
	}
	defer conn.f.Close()
	var fds []int
	if !e.TTY {
		fds = []int{int(stdin.Fd()), int(stdout.Fd()), int(stderr.Fd())}
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, ForwardedSignals...)
	defer signal.Stop(sigs)
	if err := conn.send(ctlMsg{Kind: ctlExec, Exec: &e}, fds...); err != nil {
		return ExecResult{}, err
	}
	var relay *ttyRelay
	var mu sync.Mutex
	replies := make(chan ctlMsg, 2)
	go func() {
		defer close(replies)
		for {
			m, fds, err := conn.recv()
			if err != nil {
				return
			}
			if m.Kind == ctlTTY && len(fds) == 1 {
				mu.Lock()
				relay = startTTYRelay(os.NewFile(uintptr(fds[0]), "pty"), stdin, stdout, e.Interactive)
				mu.Unlock()
				continue
			}
			closeAll(fds)
			replies <- m
		}
	}()
	for {
		select {
		case sig := <-sigs:
			mu.Lock()
			r := relay
			mu.Unlock()
			if sig == unix.SIGWINCH {
				if r != nil {
					r.resize()
				}
				continue
			}
			_ = conn.send(ctlMsg{Kind: ctlSignal, Signal: int(sig.(unix.Signal))})
		case m, ok := <-replies:
			mu.Lock()
			r := relay
			mu.Unlock()
			if r != nil {
				r.finish()
			}
			if !ok {
				return ExecResult{}, errors.New("the sandbox went away")
			}
			return ExecResult{Code: m.Code, Err: m.Err}, nil
		}
	}
}
