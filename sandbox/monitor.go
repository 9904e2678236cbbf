package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/state"
)

// MonitorArg0 is the argv[0] of the process that owns a detached sandbox.
const MonitorArg0 = "ursb-monitor"

const (
	termSignal = unix.SIGTERM
	killSignal = unix.SIGKILL
)

// started is what the monitor tells Detach: the id once the command
// runs, or why it did not.
type started struct {
	ID   string `json:"id,omitempty"`
	Code int    `json:"code,omitempty"`
	Msg  string `json:"msg,omitempty"`
}

// Detach hands j to a new monitor process, which owns the sandbox from
// then on, and returns the sandbox's id once its command runs.
func Detach(j Job) (string, error) {
	j.Detached = true
	jobR, jobW, err := os.Pipe()
	if err != nil {
		return "", err
	}
	noteR, noteW, err := os.Pipe()
	if err != nil {
		return "", err
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer null.Close()
	cmd := exec.Command("/proc/self/exe")
	cmd.Args[0] = MonitorArg0
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, null
	cmd.ExtraFiles = []*os.File{jobR, noteW}
	// A session of its own: closing the caller's terminal does not
	// reach the monitor or the sandbox.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	jobR.Close()
	noteW.Close()
	if err != nil {
		jobW.Close()
		noteR.Close()
		return "", &ExitError{Code: 125, Msg: fmt.Sprintf("starting the monitor: %v", err)}
	}
	_ = cmd.Process.Release()
	err = json.NewEncoder(jobW).Encode(j)
	jobW.Close()
	if err != nil {
		noteR.Close()
		return "", &ExitError{Code: 125, Msg: fmt.Sprintf("handing the sandbox to its monitor: %v", err)}
	}
	var note started
	err = json.NewDecoder(noteR).Decode(&note)
	noteR.Close()
	switch {
	case err != nil:
		return "", &ExitError{Code: 125, Msg: "the monitor ended before the sandbox started; see 'ursb logs " + j.Spec.Name + "'"}
	case note.ID == "":
		return "", &ExitError{Code: note.Code, Msg: note.Msg}
	}
	return note.ID, nil
}

// MonitorMain runs in the monitor: it runs the sandbox with its output in
// the sandbox's log and records how it ended. It never returns.
func MonitorMain() {
	signal.Ignore(unix.SIGHUP)
	var j Job
	jobs := os.NewFile(3, "job")
	note := os.NewFile(4, "note")
	err := json.NewDecoder(jobs).Decode(&j)
	jobs.Close()
	tell := func(n started) {
		if note != nil {
			_ = json.NewEncoder(note).Encode(n)
			note.Close()
			note = nil
		}
	}
	if err != nil || j.Spec == nil {
		tell(started{Code: 125, Msg: "the monitor got no sandbox to run"})
		os.Exit(125)
	}
	host := idmap.LookupHost()
	plan, err := idmap.Resolve(j.Spec.UserNS, host)
	if err != nil {
		tell(started{Code: 125, Msg: err.Error()})
		os.Exit(125)
	}
	logPath, err := state.LogPath(j.Spec.Name, true)
	if err != nil {
		tell(started{Code: 125, Msg: err.Error()})
		os.Exit(125)
	}
	out, logged, err := startLog(logPath)
	if err != nil {
		tell(started{Code: 125, Msg: err.Error()})
		os.Exit(125)
	}
	in, err := os.Open(os.DevNull)
	if j.Spec.Interactive && err == nil {
		// Nobody types into a detached sandbox, but a shell started
		// with -i waits on its stdin instead of ending at once.
		var w *os.File
		if in, w, err = os.Pipe(); err == nil {
			defer w.Close()
		}
	}
	if err != nil {
		tell(started{Code: 125, Msg: err.Error()})
		os.Exit(125)
	}
	code, err := Run(j, plan, host, Stdio{in, out, out}, func(r *state.Record) { tell(started{ID: r.ID}) })
	out.Close()
	<-logged
	if err != nil {
		var ee *ExitError
		n := started{Code: 125, Msg: err.Error()}
		if errors.As(err, &ee) {
			n.Code = ee.Code
		}
		tell(n)
		os.Exit(n.Code)
	}
	os.Exit(code)
}

// logCap bounds a sandbox's log: past it, the older half is dropped.
const logCap = 4 << 20

// startLog copies what the sandbox writes to the returned pipe into the
// log at path, keeping the newest output within about twice logCap (the
// log and one older generation, path.1). logged is closed once all of it
// is written.
func startLog(path string) (*os.File, <-chan struct{}, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("opening the log: %v", err)
	}
	st, _ := f.Stat()
	size := st.Size()
	r, w, err := os.Pipe()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer f.Close()
		defer r.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				if size+int64(n) > logCap {
					f.Close()
					_ = os.Rename(path, path+".1")
					if f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
						_, _ = io.Copy(io.Discard, r)
						return
					}
					size = 0
				}
				m, _ := f.Write(buf[:n])
				size += int64(m)
			}
			if err != nil {
				return
			}
		}
	}()
	return w, done, nil
}
