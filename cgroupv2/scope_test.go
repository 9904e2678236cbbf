package cgroupv2

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/ursb/ursb/internal/fakesystemd"
)

// startBus runs a private dbus-daemon for the test, or skips it.
func startBus(t *testing.T) *fakesystemd.Bus {
	t.Helper()
	// t.TempDir's long names can exceed what a socket path may hold.
	dir, err := os.MkdirTemp("", "ursb-bus")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bus, err := fakesystemd.StartBus(dir)
	if errors.Is(err, fakesystemd.ErrNoDaemon) {
		t.Skip("dbus-daemon is not installed (Debian package dbus-daemon; scripts/test.sh installs it when run as root), so the exchange with a systemd user manager goes untested")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	return bus
}

// serve puts a fake user manager on the bus.
func serve(t *testing.T, bus *fakesystemd.Bus, m *fakesystemd.Manager) *fakesystemd.Manager {
	t.Helper()
	if err := m.Serve(bus.Addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// caller is the process asking for a scope, as the fake tree and the
// fake manager both see it: in a login session's scope, which belongs to
// root, as on a systemd host.
type caller struct {
	mu  sync.Mutex
	own string
	pid int
}

const session = slice + "/session-2.scope"

func (c *caller) cgroup() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.own, nil
}

// env is the fake tree's env for the caller, with the manager at addr.
func (c *caller) env(ft *fakeTree, addr string) env {
	e := ft.env(session, user)
	e.pid, e.self, e.mgr = c.pid, c.cgroup, busManager{addr: addr}
	return e
}

// systemdStart plays what the user manager (with the system manager's
// help for processes outside its subtree) does for a scope with
// Delegate=yes: the scope's cgroup below app.slice, the caller's, with
// the controllers enabled down to it, and the PIDs moved in. It runs on
// the bus connection's goroutine, so it leaves the tree's bookkeeping
// alone: what it makes is the user's, as the fake tree assumes of new
// directories.
func systemdStart(t *testing.T, ft *fakeTree, c *caller) func(fakesystemd.Request) (string, *dbus.Error) {
	return func(r fakesystemd.Request) (string, *dbus.Error) {
		pids, _ := r.Properties["PIDs"].Value().([]uint32)
		app := filepath.Join(ft.mount, svc, "app.slice")
		scope := filepath.Join(app, r.Unit)
		var moved []string
		for _, pid := range pids {
			moved = append(moved, strconv.Itoa(int(pid)))
		}
		for _, d := range []struct{ dir, procs string }{{app, ""}, {scope, strings.Join(moved, " ")}} {
			if err := os.MkdirAll(d.dir, 0o755); err != nil {
				t.Error(err)
				return "failed", nil
			}
			for name, content := range map[string]string{
				"cgroup.controllers": all, "cgroup.subtree_control": "", "cgroup.procs": d.procs,
				"cgroup.events": "populated 1\nfrozen 0\n",
			} {
				if err := os.WriteFile(filepath.Join(d.dir, name), []byte(content), 0o644); err != nil {
					t.Error(err)
					return "failed", nil
				}
			}
		}
		from := filepath.Join(ft.mount, session, "cgroup.procs")
		left := slices.DeleteFunc(strings.Fields(ft.read(from)), func(p string) bool { return slices.Contains(moved, p) })
		_ = os.WriteFile(from, []byte(strings.Join(left, " ")), 0o644)
		c.mu.Lock()
		if slices.Contains(pids, uint32(c.pid)) {
			c.own = svc + "/app.slice/" + r.Unit
		}
		c.mu.Unlock()
		return "done", nil
	}
}

func newCaller(ft *fakeTree) *caller {
	c := &caller{own: session, pid: os.Getpid()}
	// The session holds the caller and another process of the user's.
	if err := os.WriteFile(filepath.Join(ft.mount, session, "cgroup.procs"), []byte("77 "+strconv.Itoa(c.pid)), 0o644); err != nil {
		panic(err)
	}
	return c
}

func TestScopeFromUserManager(t *testing.T) {
	bus := startBus(t)
	for _, order := range []struct {
		name                      string
		replyFirst, otherJobFirst bool
	}{
		{"JobRemoved before the reply", false, false},
		{"reply before JobRemoved", true, false},
		{"another job ends first", false, true},
	} {
		t.Run(order.name, func(t *testing.T) {
			ft := systemdTree(t, all)
			c := newCaller(ft)
			m := serve(t, bus, &fakesystemd.Manager{Start: systemdStart(t, ft, c), ReplyFirst: order.replyFirst, OtherJobFirst: order.otherJobFirst})
			defer m.Close()

			leaf, err := prepare(c.env(ft, bus.Addr), "ab12", "", mustSettings(t, Limits{MemoryBytes: 64 << 20}))
			if err != nil {
				t.Fatal(err)
			}
			defer leaf.Remove()

			reqs := m.Requests()
			if len(reqs) != 1 {
				t.Fatalf("the manager got %d StartTransientUnit calls, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Unit != "ursb-ab12.scope" || !strings.HasSuffix(r.Unit, ".scope") || r.Mode != "fail" || r.Aux != 0 {
				t.Errorf("asked for unit %q mode %q with %d auxiliary units, want ursb-ab12.scope, fail, none", r.Unit, r.Mode, r.Aux)
			}
			if v, ok := r.Properties["Delegate"]; !ok || v.Signature().String() != "b" || v.Value() != true {
				t.Errorf("Delegate = %v, want the boolean true", v)
			}
			if v := r.Properties["PIDs"]; v.Signature().String() != "au" || !slices.Equal(v.Value().([]uint32), []uint32{uint32(c.pid)}) {
				t.Errorf("PIDs = %v, want [%d] as au", v, c.pid)
			}
			if d, _ := r.Properties["Description"].Value().(string); !strings.Contains(d, "ab12") {
				t.Errorf("Description = %q, want one naming the sandbox", d)
			}

			scope := filepath.Join(ft.mount, svc, "app.slice", "ursb-ab12.scope")
			if leaf.Path() != filepath.Join(scope, "ursb-ab12") {
				t.Errorf("leaf at %s, want it below the scope %s", leaf.Path(), scope)
			}
			if got := ft.read(filepath.Join(leaf.Path(), "memory.max")); got != "67108864" {
				t.Errorf("memory.max = %q", got)
			}
			// The caller left the scope's own cgroup for a leaf, so that
			// the scope could hand memory on to the sandbox.
			if got := ft.read(filepath.Join(scope, callerLeaf, "cgroup.procs")); got != strconv.Itoa(c.pid) {
				t.Errorf("%s holds %q, want the caller %d", callerLeaf, got, c.pid)
			}
			if got := ft.read(filepath.Join(scope, "cgroup.subtree_control")); !strings.Contains(got, "memory") {
				t.Errorf("the scope's subtree_control is %q, want memory enabled", got)
			}
			if got := ft.read(filepath.Join(ft.mount, session, "cgroup.procs")); got != "77" {
				t.Errorf("the session still holds %q; only the caller should have moved", got)
			}
		})
	}
}

func TestScopeFallsBackToTheError(t *testing.T) {
	ft := systemdTree(t, all)
	memory := mustSettings(t, Limits{MemoryBytes: 64 << 20})
	c := newCaller(ft)
	noManager := c.env(ft, "")
	noManager.mgr = nil
	_, baseline := prepare(noManager, "ab", "", memory)
	if baseline == nil || !errors.Is(baseline, ErrNoDelegation) {
		t.Fatalf("without a manager: got %v, want the no-delegation error", baseline)
	}
	const prefix = "cannot apply --memory 64 MiB: your cgroup " + session + " belongs to root"
	fix, ok := strings.CutPrefix(baseline.Error(), prefix)
	if !ok || !strings.HasPrefix(fix, "; no systemd user manager answers here to hand one out, so root must delegate one") {
		t.Fatalf("without a manager: got %v", baseline)
	}

	// Where no manager answers, nothing changes, and nothing waits.
	missing := "unix:path=" + filepath.Join(t.TempDir(), "no-bus")
	start := time.Now()
	_, err := prepare(c.env(ft, missing), "ab", "", memory)
	if err == nil || err.Error() != baseline.Error() {
		t.Errorf("no bus: got %v\nwant %v", err, baseline)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("no bus: took %s to give up", d)
	}
	if leaf, err := prepare(c.env(ft, missing), "ab", "", nil); leaf != nil || err != nil {
		t.Errorf("no bus, no limits: got %v, %v; want no leaf and no error", leaf, err)
	}

	bus := startBus(t)
	if _, err := prepare(c.env(ft, bus.Addr), "ab", "", memory); err == nil || err.Error() != baseline.Error() {
		t.Errorf("a bus without systemd: got %v\nwant %v", err, baseline)
	}

	old := scopeTimeout
	t.Cleanup(func() { scopeTimeout = old })
	scopeTimeout = 300 * time.Millisecond

	// A socket that accepts and never answers costs the bound, no more,
	// and counts as no manager.
	hung := filepath.Join(t.TempDir(), "hung")
	l, err := net.Listen("unix", hung)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	start = time.Now()
	if _, err := prepare(c.env(ft, "unix:path="+hung), "ab", "", memory); err == nil || err.Error() != baseline.Error() {
		t.Errorf("a bus that never answers: got %v\nwant %v", err, baseline)
	}
	if d := time.Since(start); d < scopeTimeout || d > scopeTimeout+time.Second {
		t.Errorf("a bus that never answers: gave up after %s, want about %s", d, scopeTimeout)
	}
	for _, tc := range []struct {
		name  string
		start func(fakesystemd.Request) (string, *dbus.Error)
		why   string
	}{
		{"job failed", func(fakesystemd.Request) (string, *dbus.Error) { return "failed", nil },
			`its job for ursb-ab.scope ended with "failed"`},
		{"call refused", func(fakesystemd.Request) (string, *dbus.Error) {
			return "", dbus.NewError("org.freedesktop.DBus.Error.AccessDenied", []any{"Access denied"})
		}, "StartTransientUnit ursb-ab.scope: Access denied"},
		{"job never ends", func(fakesystemd.Request) (string, *dbus.Error) { return "", nil },
			"its job for ursb-ab.scope did not end within 300ms"},
		{"nothing moved", func(fakesystemd.Request) (string, *dbus.Error) { return "done", nil },
			"it reported ursb-ab.scope started, but ursb is still in " + session},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := serve(t, bus, &fakesystemd.Manager{Start: tc.start})
			defer m.Close()
			start := time.Now()
			leaf, err := prepare(c.env(ft, bus.Addr), "ab", "", memory)
			if leaf != nil {
				t.Errorf("got a leaf at %s", leaf.Path())
			}
			// A manager that answers, if not well, may do better with
			// systemd-run's own scope.
			want := prefix + ", and the systemd user manager gave no usable scope: " + tc.why + "; run ursb in a cgroup delegated to you (systemd-run --user --scope -p Delegate=yes ursb run ...)"
			if err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, ErrNoDelegation) {
				t.Errorf("got  %v\nwant %s", err, want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %s to give up", d)
			}
			// Without limits the sandbox runs anyway, with a notice.
			if leaf, err := prepare(c.env(ft, bus.Addr), "ab", "", nil); leaf != nil || !errors.Is(err, ErrNoLeaf) || !strings.Contains(err.Error(), tc.why) {
				t.Errorf("no limits: got %v, %v; want ErrNoLeaf saying %q", leaf, err, tc.why)
			}
		})
	}
}

func TestCheckScope(t *testing.T) {
	ft := systemdTree(t, "memory pids cpu")
	c := newCaller(ft)
	bus := startBus(t)

	ok, detail := check(c.env(ft, bus.Addr))
	if ok || !strings.HasPrefix(detail, "limits unavailable: your cgroup "+session+" belongs to root; no systemd user manager answers here") {
		t.Errorf("no manager: got %v, %q", ok, detail)
	}

	m := serve(t, bus, &fakesystemd.Manager{ControlGroup: svc})
	want := "transient scope ursb-<id>.scope with Delegate=yes from the systemd user manager, below " + svc +
		" (cgroup v2 at " + ft.mount + "; your own cgroup is not delegated: your cgroup " + session + " belongs to root)" +
		", controllers: cpu memory pids; not delegated: cpuset io (as root: systemctl edit user@.service, add [Service] Delegate=memory pids cpu cpuset io, log in again)"
	if ok, detail := check(c.env(ft, bus.Addr)); !ok || detail != want {
		t.Errorf("got %v, %q\nwant %q", ok, detail, want)
	}
	if len(m.Requests()) != 0 {
		t.Error("check started a scope")
	}
	m.Close()

	serve(t, bus, &fakesystemd.Manager{})
	if ok, detail := check(c.env(ft, bus.Addr)); ok || !strings.Contains(detail, "the systemd user manager did not answer as expected: reading its ControlGroup: unknown property") {
		t.Errorf("manager without ControlGroup: got %v, %q", ok, detail)
	}
}

func TestUserBus(t *testing.T) {
	for _, tc := range []struct{ session, runtime, want string }{
		{"unix:path=/run/user/1000/bus", "/run/user/1000", "unix:path=/run/user/1000/bus"},
		{"", "/run/user/1000", "unix:path=/run/user/1000/bus"},
		{"", "", ""},
		{"tcp:host=example.org,port=1;unix:abstract=/tmp/x", "", "unix:abstract=/tmp/x"},
		{"unixexec:path=/bin/sh", "/run/user/1000", ""},
	} {
		t.Setenv("DBUS_SESSION_BUS_ADDRESS", tc.session)
		t.Setenv("XDG_RUNTIME_DIR", tc.runtime)
		if got := userBus(); got != tc.want {
			t.Errorf("session %q runtime %q: got %q, want %q", tc.session, tc.runtime, got, tc.want)
		}
	}
}
