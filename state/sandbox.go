package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrRunning is returned when a named sandbox is in use by another ursb.
var ErrRunning = errors.New("already running")

// ErrNoSandbox is returned for a name that has no stored sandbox.
var ErrNoSandbox = errors.New("no such sandbox")

// CheckName rejects names that could not be a directory name of their own:
// 1 to 63 letters, digits, '_', '.' and '-', starting with a letter or digit.
// It is a loop rather than a regexp because a package-level regexp is
// compiled at the start of every ursb process, the sandbox's init included,
// and this one cost a millisecond there.
func CheckName(name string) error {
	valid := len(name) > 0 && len(name) <= 63 && isAlnum(name[0])
	for i := 1; valid && i < len(name); i++ {
		c := name[i]
		valid = isAlnum(c) || c == '_' || c == '.' || c == '-'
	}
	if !valid {
		return fmt.Errorf("invalid sandbox name %q: use letters, digits, '_', '.' and '-', starting with a letter or digit", name)
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// Stage is the runtime directory of one run of a sandbox. Its lock is held
// for as long as the run lasts, so a stage whose lock is free belongs to an
// ursb that died and can be swept.
type Stage struct {
	ID  string
	Dir string
	// Root is an empty directory on which the sandbox's root is assembled.
	Root string
	lock *os.File
}

// NewStage creates and locks the runtime directory of sandbox id.
func NewStage(id string) (*Stage, error) {
	run, err := RuntimeDir()
	if err != nil {
		return nil, err
	}
	// Made under a dot name and renamed once locked, so Sweep never sees
	// it unlocked.
	tmp := filepath.Join(run, ".new-"+id)
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("creating the sandbox's runtime directory: %v", err)
	}
	lock, err := lockFile(filepath.Join(tmp, "lock"), true)
	if err == nil {
		err = os.Mkdir(filepath.Join(tmp, "root"), 0o700)
	}
	dir := filepath.Join(run, id)
	if err == nil {
		err = os.Rename(tmp, dir)
	}
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("creating the sandbox's runtime directory: %v", err)
	}
	return &Stage{ID: id, Dir: dir, Root: filepath.Join(dir, "root"), lock: lock}, nil
}

// Remove deletes the stage; the mounts on it lived only in the sandbox's
// mount namespace, so on the host it holds only empty directories and
// files ursb made.
func (s *Stage) Remove() error {
	err := os.RemoveAll(s.Dir)
	s.lock.Close()
	return err
}

// Storage is the directory holding a sandbox's overlay upper and work
// trees: data/sandboxes/NAME for a named sandbox, data/scratch/ID for an
// anonymous one.
type Storage struct {
	Dir  string
	lock *os.File
}

// Upper is the directory of the sandbox's changes.
func (s *Storage) Upper() string { return filepath.Join(s.Dir, "upper") }

// Work is the overlay work directory, on the same filesystem as Upper.
func (s *Storage) Work() string { return filepath.Join(s.Dir, "work") }

// Scratch creates the storage of an anonymous sandbox; it lives as long as
// the stage with the same id.
func Scratch(id string) (*Storage, error) {
	dir, err := dataSub("scratch")
	if err != nil {
		return nil, err
	}
	s := &Storage{Dir: filepath.Join(dir, id)}
	if err := mkdirs(s.Dir, s.Upper(), s.Work()); err != nil {
		return nil, fmt.Errorf("creating the sandbox's storage: %v", err)
	}
	return s, nil
}

// Named opens the storage of sandbox name, creating it when create is set,
// and locks it: ErrRunning when another ursb holds it.
func Named(name string, create bool) (*Storage, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	dir, err := dataSub("sandboxes")
	if err != nil {
		return nil, err
	}
	s := &Storage{Dir: filepath.Join(dir, name)}
	if !create {
		if _, err := os.Lstat(s.Dir); err != nil {
			return nil, fmt.Errorf("%s: %w", name, ErrNoSandbox)
		}
	}
	if err := mkdirs(s.Dir); err != nil {
		return nil, fmt.Errorf("creating the storage of sandbox %s: %v", name, err)
	}
	if s.lock, err = lockFile(filepath.Join(s.Dir, "lock"), false); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("sandbox %s is %w", name, ErrRunning)
		}
		return nil, fmt.Errorf("locking sandbox %s: %v", name, err)
	}
	if err := mkdirs(s.Upper(), s.Work()); err != nil {
		s.Unlock()
		return nil, fmt.Errorf("creating the storage of sandbox %s: %v", name, err)
	}
	return s, nil
}

// Unlock releases the lock taken by Named.
func (s *Storage) Unlock() {
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
}

// ReadFile reads a small file kept next to the layers, such as the root
// description that ursb diff needs.
func (s *Storage) ReadFile(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(s.Dir, name))
}

// WriteFile replaces such a file atomically.
func (s *Storage) WriteFile(name string, data []byte) error {
	tmp := filepath.Join(s.Dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.Dir, name))
}

// Sweep removes what sandboxes left behind when their ursb was killed: the
// runtime directories whose lock is free and the scratch storage without a
// live run. remove deletes a storage directory, which may hold files owned
// by subordinate ids that only a user namespace can delete.
func Sweep(remove func(dir string) error) {
	run, err := RuntimeDir()
	if err != nil {
		return
	}
	scratch, err := dataSub("scratch")
	if err != nil {
		return
	}
	entries, _ := os.ReadDir(run)
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(run, name)
		if strings.HasPrefix(name, ".new-") {
			// Half-made by NewStage: its maker locks it at once and
			// holds the lock until it renames it, so a free lock a
			// moment on is a maker that was killed.
			if abandoned(path) {
				os.RemoveAll(path)
			}
			continue
		}
		if !e.IsDir() {
			continue
		}
		if held(filepath.Join(path, "lock")) {
			continue
		}
		lock, err := lockFile(filepath.Join(path, "lock"), false)
		if err != nil {
			continue
		}
		if _, err := os.Lstat(filepath.Join(scratch, name)); err == nil {
			_ = remove(filepath.Join(scratch, name))
		}
		os.RemoveAll(path)
		lock.Close()
	}
	entries, _ = os.ReadDir(scratch)
	for _, e := range entries {
		if _, err := os.Lstat(filepath.Join(run, e.Name())); errors.Is(err, os.ErrNotExist) {
			_ = remove(filepath.Join(scratch, e.Name()))
		}
	}
	// A first run of a new name that was killed before it wrote the
	// sandbox's record leaves layers that no command would show.
	named, err := dataSub("sandboxes")
	if err != nil {
		return
	}
	entries, _ = os.ReadDir(named)
	for _, e := range entries {
		path := filepath.Join(named, e.Name())
		if _, err := os.Lstat(filepath.Join(path, recordFile)); !errors.Is(err, os.ErrNotExist) || !abandoned(path) {
			continue
		}
		lock, err := lockFile(filepath.Join(path, "lock"), false)
		if err != nil {
			continue
		}
		// Under the lock: its maker may have written the record since.
		if _, err := os.Lstat(filepath.Join(path, recordFile)); errors.Is(err, os.ErrNotExist) {
			_ = remove(path)
		}
		lock.Close()
	}
}

// abandoned tells whether the directory dir, which its maker locks as
// soon as it has made it, has no maker any more: its lock is free, and it
// is older than making and locking it takes (the lock file exists a
// moment before it is locked).
func abandoned(dir string) bool {
	info, err := os.Lstat(dir)
	if err != nil || time.Since(info.ModTime()) < 10*time.Second {
		return false
	}
	return !held(filepath.Join(dir, "lock"))
}

// Names lists the stored named sandboxes.
func Names() ([]string, error) {
	dir, err := dataSub("sandboxes")
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && CheckName(e.Name()) == nil {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

func dataSub(name string) (string, error) {
	data, err := DataDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(data, name)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("creating %s: %v", dir, err)
	}
	return dir, nil
}

func mkdirs(dirs ...string) error {
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	return nil
}

// lockFile opens (or creates) path and takes an exclusive flock on it
// without waiting. The kernel drops the lock when its holder dies, so a
// crash leaves no stale lock.
func lockFile(path string, create bool) (*os.File, error) {
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE | os.O_EXCL
	} else {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(path, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Lookup returns the storage of an existing named sandbox without locking
// it: reading a running sandbox's layers is allowed.
func Lookup(name string) (*Storage, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	dir, err := dataSub("sandboxes")
	if err != nil {
		return nil, err
	}
	s := &Storage{Dir: filepath.Join(dir, name)}
	if _, err := os.Lstat(s.Dir); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrNoSandbox, name)
	}
	return s, nil
}

// Rename gives the exited named sandbox old the name new: its layers,
// its record and its spec follow.
func Rename(old, new string) error {
	if err := CheckName(new); err != nil {
		return err
	}
	st, err := Named(old, false)
	if err != nil {
		if errors.Is(err, ErrRunning) {
			return fmt.Errorf("sandbox %s is running; stop it first", old)
		}
		return err
	}
	defer st.Unlock()
	dir := filepath.Dir(st.Dir)
	// RENAME_NOREPLACE: a sandbox made under the new name meanwhile is
	// never replaced.
	if err := unix.Renameat2(unix.AT_FDCWD, st.Dir, unix.AT_FDCWD, filepath.Join(dir, new), unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("a sandbox named %s exists; remove it or choose another name", new)
		}
		return fmt.Errorf("renaming sandbox %s: %v", old, err)
	}
	st.Dir = filepath.Join(dir, new)
	path := filepath.Join(st.Dir, recordFile)
	r, err := readRecord(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	r.Name = new
	if r.Spec != nil {
		r.Spec.Name = new
		if r.Spec.Network.DeniedLog == filepath.Join(dir, old, netLogFile) {
			// The log of refusals moved with the directory.
			r.Spec.Network.DeniedLog = filepath.Join(st.Dir, netLogFile)
		}
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(path, data)
}
