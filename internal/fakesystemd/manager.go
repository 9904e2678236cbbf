package fakesystemd

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

const (
	name         = "org.freedesktop.systemd1"
	path         = dbus.ObjectPath("/org/freedesktop/systemd1")
	managerIface = "org.freedesktop.systemd1.Manager"
	propsIface   = "org.freedesktop.DBus.Properties"
)

// Request is one StartTransientUnit call as the manager received it.
type Request struct {
	Unit       string
	Mode       string
	Properties map[string]dbus.Variant
	// Aux is how many auxiliary units came with it.
	Aux int
}

// Manager stands in for the systemd user manager.
type Manager struct {
	// Start does what systemd would for a request (create the scope's
	// cgroup, move the processes) and returns the result JobRemoved
	// reports: "done", "failed", or "" for a job that never ends. A
	// non-nil error is the answer to the call instead, and no job is made.
	Start func(Request) (string, *dbus.Error)
	// ControlGroup is the Manager's ControlGroup property.
	ControlGroup string
	// ReplyFirst answers the call before JobRemoved is sent. By default
	// the signal goes first: systemd may end a scope's job before the
	// client reads the reply, and a client that subscribes late misses it.
	ReplyFirst bool
	// OtherJobFirst sends the JobRemoved of another client's failed job
	// before the one that answers the request.
	OtherJobFirst bool

	conn     *dbus.Conn
	mu       sync.Mutex
	requests []Request
	jobs     uint32
}

type property struct {
	Name  string
	Value dbus.Variant
}

type auxUnit struct {
	Name       string
	Properties []property
}

// managerObject and propsObject are what is exported: only their methods
// become D-Bus methods.
type managerObject struct{ m *Manager }
type propsObject struct{ m *Manager }

// Serve connects to the bus at addr and takes the name systemd's manager
// has there.
func (m *Manager) Serve(addr string) error {
	conn, err := dbus.Connect(addr)
	if err != nil {
		return fmt.Errorf("connecting to %s: %v", addr, err)
	}
	m.mu.Lock()
	m.conn = conn
	m.mu.Unlock()
	if err := conn.Export(managerObject{m}, path, managerIface); err != nil {
		conn.Close()
		return err
	}
	if err := conn.Export(propsObject{m}, path, propsIface); err != nil {
		conn.Close()
		return err
	}
	// A manager closed just before may still hold the name for a moment:
	// the bus releases it once it sees that connection gone.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		reply, err := conn.RequestName(name, dbus.NameFlagDoNotQueue)
		if err == nil && reply == dbus.RequestNameReplyPrimaryOwner {
			break
		}
		if err != nil || time.Now().After(deadline) {
			conn.Close()
			return fmt.Errorf("cannot own %s on the bus (reply %v): %v", name, reply, err)
		}
	}
	return nil
}

// Close leaves the bus.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.conn != nil {
		m.conn.Close()
	}
}

// Requests are the StartTransientUnit calls received so far.
func (m *Manager) Requests() []Request {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Request(nil), m.requests...)
}

func (m *Manager) jobPath() (uint32, dbus.ObjectPath) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.jobs++
	return m.jobs, path + "/job/" + dbus.ObjectPath(strconv.Itoa(int(m.jobs)))
}

func (m *Manager) jobRemoved(id uint32, job dbus.ObjectPath, unit, result string) {
	m.mu.Lock()
	conn := m.conn
	m.mu.Unlock()
	_ = conn.Emit(path, managerIface+".JobRemoved", id, job, unit, result)
}

// StartTransientUnit is systemd's method of that name (ssa(sv)a(sa(sv))).
func (o managerObject) StartTransientUnit(unit, mode string, props []property, aux []auxUnit) (dbus.ObjectPath, *dbus.Error) {
	m := o.m
	req := Request{Unit: unit, Mode: mode, Properties: map[string]dbus.Variant{}, Aux: len(aux)}
	for _, p := range props {
		req.Properties[p.Name] = p.Value
	}
	m.mu.Lock()
	m.requests = append(m.requests, req)
	m.mu.Unlock()
	result, derr := m.Start(req)
	if derr != nil {
		return "", derr
	}
	if m.OtherJobFirst {
		id, other := m.jobPath()
		m.jobRemoved(id, other, "other.service", "failed")
	}
	id, job := m.jobPath()
	switch {
	case result == "":
	case m.ReplyFirst:
		go func() {
			time.Sleep(20 * time.Millisecond)
			m.jobRemoved(id, job, unit, result)
		}()
	default:
		m.jobRemoved(id, job, unit, result)
	}
	return job, nil
}

// Get is org.freedesktop.DBus.Properties.Get for the one property asked.
func (o propsObject) Get(iface, prop string) (dbus.Variant, *dbus.Error) {
	if iface == managerIface && prop == "ControlGroup" && o.m.ControlGroup != "" {
		return dbus.MakeVariant(o.m.ControlGroup), nil
	}
	return dbus.Variant{}, dbus.NewError("org.freedesktop.DBus.Error.UnknownProperty", []any{"unknown property " + iface + "." + prop})
}
