package state

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// RuntimeDir returns ursb's runtime directory, creating it if needed.
func RuntimeDir() (string, error) {
	base := os.Getenv("XDG_RUNTIME_DIR")
	if base == "" || !filepath.IsAbs(base) {
		base = loginRuntimeDir()
	}
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("neither XDG_RUNTIME_DIR nor HOME is set; set one of them")
		}
		base = filepath.Join(home, ".local", "state")
	}
	return private(filepath.Join(base, "ursb"))
}

// loginRuntimeDir is the runtime directory the login manager made for the
// caller, /run/user/UID, when there is one: a shell without
// XDG_RUNTIME_DIR (after su or runuser) must find the sandboxes that the
// user's login shells, which have it set to that directory, started. As
// podman does, it counts only when it is the caller's and private.
func loginRuntimeDir() string {
	dir := fmt.Sprintf("/run/user/%d", os.Geteuid())
	var st unix.Stat_t
	if unix.Lstat(dir, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR || int(st.Uid) != os.Geteuid() || st.Mode&0o077 != 0 {
		return ""
	}
	return dir
}

// DataDir returns ursb's data directory, creating it if needed.
func DataDir() (string, error) {
	base := os.Getenv("XDG_DATA_HOME")
	if base == "" || !filepath.IsAbs(base) {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("neither XDG_DATA_HOME nor HOME is set; set one of them")
		}
		base = filepath.Join(home, ".local", "share")
	}
	return private(filepath.Join(base, "ursb"))
}

// private makes dir (and its parents) and insists that dir itself is a
// real directory owned by the caller with mode 0700.
func private(dir string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return "", fmt.Errorf("creating %s: %v", filepath.Dir(dir), errors.Unwrap(err))
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("creating %s: %v", dir, errors.Unwrap(err))
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return "", err
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return "", fmt.Errorf("%s is not a directory; remove it and try again", dir)
	case int(st.Uid) != os.Geteuid():
		return "", fmt.Errorf("%s belongs to uid %d, not to you; remove it or point XDG_RUNTIME_DIR/XDG_DATA_HOME elsewhere", dir, st.Uid)
	case st.Mode&0o077 != 0:
		if err := unix.Chmod(dir, 0o700); err != nil {
			return "", fmt.Errorf("%s is open to other users and cannot be made private: %v", dir, err)
		}
	}
	return dir, nil
}

// NewID returns a fresh random sandbox id (32 hex digits). The bytes come
// from getrandom(2) directly: crypto/rand would link, and initialise in
// every ursb process, the sandbox's init included, a dozen FIPS packages
// that nothing else here uses. /dev/urandom serves where a seccomp filter
// refuses getrandom.
func NewID() string {
	b := make([]byte, 16)
	for n := 0; n < len(b); {
		m, err := unix.Getrandom(b[n:], 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			f, err := os.Open("/dev/urandom")
			if err == nil {
				_, err = io.ReadFull(f, b)
				f.Close()
			}
			if err != nil {
				panic(fmt.Sprintf("no random bytes for a sandbox id: %v", err))
			}
			break
		}
		n += m
	}
	return hex.EncodeToString(b)
}
