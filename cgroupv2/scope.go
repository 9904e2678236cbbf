package cgroupv2

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"
)

// errNoManager means no systemd user manager answers on the caller's bus:
// no bus socket, a bus that refuses the caller, or a bus without systemd
// on it. It is not worth a word to the user: the host simply has none.
var errNoManager = errors.New("no systemd user manager is reachable")

// scopeTimeout bounds one whole exchange with the user manager, from
// connecting to the end of its job. A missing socket fails at once; the
// bound is for a manager that hangs, which must not hang ursb with it.
var scopeTimeout = 2 * time.Second

const (
	systemdName     = "org.freedesktop.systemd1"
	systemdPath     = dbus.ObjectPath("/org/freedesktop/systemd1")
	managerIface    = "org.freedesktop.systemd1.Manager"
	jobRemoved      = "JobRemoved"
	jobDone         = "done"
	scopeSuffix     = ".scope"
	propertiesIface = "org.freedesktop.DBus.Properties"
)

// manager is the systemd user manager as placement needs it; tests talk
// to a fake one on a private bus.
type manager interface {
	// startScope asks for a transient scope named unit holding pid, with
	// Delegate=yes, and returns once the manager reports it started.
	startScope(unit, description string, pid int) error
	// controlGroup is the manager's own cgroup, below which its scopes go.
	controlGroup() (string, error)
}

// busManager reaches the user manager over the user's D-Bus session bus,
// as `systemctl --user` does.
type busManager struct{ addr string }

// userBus is the address of the caller's session bus: the one the login
// session exported, else the socket systemd's user bus listens on. Only
// unix sockets count: a tcp: entry would send credentials over the
// network, and a unixexec: one would run a program.
func userBus() string {
	addr := os.Getenv("DBUS_SESSION_BUS_ADDRESS")
	if addr == "" {
		dir := os.Getenv("XDG_RUNTIME_DIR")
		if dir == "" {
			return ""
		}
		addr = "unix:path=" + dbus.EscapeBusAddressValue(filepath.Join(dir, "bus"))
	}
	var unix []string
	for _, a := range strings.Split(addr, ";") {
		if strings.HasPrefix(a, "unix:") {
			unix = append(unix, a)
		}
	}
	return strings.Join(unix, ";")
}

// connect opens a private connection that lives until ctx ends. Any
// failure here means there is nobody to ask.
func (m busManager) connect(ctx context.Context) (*dbus.Conn, error) {
	if m.addr == "" {
		return nil, errNoManager
	}
	// EXTERNAL only: the kernel vouches for the uid on a unix socket, and
	// the cookie mechanism would read files in the home directory.
	conn, err := dbus.Connect(m.addr, dbus.WithContext(ctx), dbus.WithAuth(dbus.AuthExternal(strconv.Itoa(os.Geteuid()))))
	if err != nil {
		return nil, errNoManager
	}
	return conn, nil
}

// callError turns a failed call into errNoManager when systemd is simply
// not on the bus, and into the manager's own words otherwise.
func callError(ctx context.Context, what string, err error) error {
	var derr dbus.Error
	if errors.As(err, &derr) {
		switch derr.Name {
		case "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner":
			return errNoManager
		}
		if len(derr.Body) > 0 {
			if msg, ok := derr.Body[0].(string); ok && msg != "" {
				return fmt.Errorf("%s: %s", what, msg)
			}
		}
		return fmt.Errorf("%s: %s", what, derr.Name)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s: no answer within %s", what, scopeTimeout)
	}
	return fmt.Errorf("%s: %v", what, err)
}

// scopeProperty is one (sv) of StartTransientUnit's property array.
type scopeProperty struct {
	Name  string
	Value dbus.Variant
}

// auxUnit is one (sa(sv)) of its auxiliary units; ursb asks for none.
type auxUnit struct {
	Name       string
	Properties []scopeProperty
}

func (m busManager) startScope(unit, description string, pid int) error {
	ctx, cancel := context.WithTimeout(context.Background(), scopeTimeout)
	defer cancel()
	conn, err := m.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	// Subscribe before asking: the manager may finish the job, and send
	// JobRemoved, before its reply to the call is read. systemd sends the
	// signal to the client that queued the job without a Subscribe call.
	signals := make(chan *dbus.Signal, 16)
	conn.Signal(signals)
	err = conn.AddMatchSignalContext(ctx,
		dbus.WithMatchSender(systemdName), dbus.WithMatchObjectPath(systemdPath),
		dbus.WithMatchInterface(managerIface), dbus.WithMatchMember(jobRemoved))
	if err != nil {
		return callError(ctx, "subscribing to its job signals", err)
	}
	props := []scopeProperty{
		{"Description", dbus.MakeVariant(description)},
		{"PIDs", dbus.MakeVariant([]uint32{uint32(pid)})},
		{"Delegate", dbus.MakeVariant(true)},
	}
	var job dbus.ObjectPath
	// NoAutoStart: a bus without systemd must answer at once, not try to
	// start one. Mode "fail": never displace a job already queued.
	err = conn.Object(systemdName, systemdPath).CallWithContext(ctx, managerIface+".StartTransientUnit",
		dbus.FlagNoAutoStart, unit, "fail", props, []auxUnit{}).Store(&job)
	if err != nil {
		return callError(ctx, "StartTransientUnit "+unit, err)
	}
	for {
		select {
		case sig, ok := <-signals:
			if !ok {
				return fmt.Errorf("the bus closed the connection before the job for %s ended", unit)
			}
			if result, ok := jobResult(sig, job); ok {
				if result != jobDone {
					return fmt.Errorf("its job for %s ended with %q", unit, result)
				}
				return nil
			}
		case <-ctx.Done():
			return fmt.Errorf("its job for %s did not end within %s", unit, scopeTimeout)
		}
	}
}

// jobResult reads a JobRemoved signal (u id, o job, s unit, s result) and
// reports its result when it is about job.
func jobResult(sig *dbus.Signal, job dbus.ObjectPath) (string, bool) {
	if sig.Name != managerIface+"."+jobRemoved || len(sig.Body) != 4 {
		return "", false
	}
	path, _ := sig.Body[1].(dbus.ObjectPath)
	result, ok := sig.Body[3].(string)
	return result, ok && path == job
}

func (m busManager) controlGroup() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), scopeTimeout)
	defer cancel()
	conn, err := m.connect(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	var v dbus.Variant
	err = conn.Object(systemdName, systemdPath).CallWithContext(ctx, propertiesIface+".Get",
		dbus.FlagNoAutoStart, managerIface, "ControlGroup").Store(&v)
	if err != nil {
		return "", callError(ctx, "reading its ControlGroup", err)
	}
	cg, ok := v.Value().(string)
	if !ok || !strings.HasPrefix(cg, "/") {
		return "", fmt.Errorf("its ControlGroup is %s, not a cgroup path", v)
	}
	return cg, nil
}

// scopeUnit names the scope of sandbox id after its leaf, so that
// `systemctl --user status` shows which sandbox a scope is for.
func scopeUnit(id string) string { return leafPrefix + id + scopeSuffix }

// inScope asks the user manager to move ursb into a transient scope of
// its own with Delegate=yes, and returns where leaves then go: in that
// scope, which from then on is the caller's own delegated cgroup. The env
// returned knows the caller's new cgroup.
func inScope(e env, id string) (env, placement, error) {
	unit := scopeUnit(id)
	if err := e.mgr.startScope(unit, "ursb sandbox "+id, e.pid); err != nil {
		return e, placement{}, err
	}
	own, err := e.self()
	if err != nil {
		return e, placement{}, err
	}
	// The job's end is the manager's word; /proc/self/cgroup is the
	// kernel's, and only it says the move happened.
	if filepath.Base(own) != unit {
		return e, placement{}, fmt.Errorf("it reported %s started, but ursb is still in %s", unit, own)
	}
	dir, err := e.h.dir(own)
	if err != nil {
		return e, placement{}, err
	}
	e.own = own
	if !e.owns(dir) {
		return e, placement{}, fmt.Errorf("its scope %s belongs to %s, not you", own, e.ownerName(dir))
	}
	return e, placement{own: dir, root: dir, parent: dir}, nil
}
