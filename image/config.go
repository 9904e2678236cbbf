package image

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/spec"
)

// Command is the command line a sandbox of an image runs, Docker's rule:
// the entrypoint (or override, a JSON array or one word; empty clears
// it) followed by args, or by the image's Cmd when there are none and
// the entrypoint was not overridden.
func Command(cf *v1.ConfigFile, override *string, args []string) ([]string, error) {
	entry := cf.Config.Entrypoint
	cmd := cf.Config.Cmd
	if override != nil {
		entry, cmd = nil, nil
		o := strings.TrimSpace(*override)
		switch {
		case o == "":
		case strings.HasPrefix(o, "["):
			if err := json.Unmarshal([]byte(o), &entry); err != nil {
				return nil, fmt.Errorf("--entrypoint %s: not a JSON array of strings", o)
			}
		default:
			entry = []string{o}
		}
	}
	if len(args) > 0 {
		cmd = args
	}
	argv := append(append([]string{}, entry...), cmd...)
	if len(argv) == 0 {
		return nil, errors.New("the image sets no command (Entrypoint and Cmd are empty); give one after the image")
	}
	return argv, nil
}

// ResolveUser turns an image's or -u's USER[:GROUP] (names or numbers)
// into ids, names looked up in the image's /etc/passwd and /etc/group.
func (s *Store) ResolveUser(r *Record, user string) (spec.User, error) {
	us, gs, hasGroup := strings.Cut(user, ":")
	var u spec.User
	uid, err := strconv.ParseUint(us, 10, 32)
	if err == nil {
		u.UID, u.GID = uint32(uid), 0
		if e, ok := s.lookup(r, "etc/passwd", func(f []string) bool { return len(f) > 3 && f[2] == us }); ok {
			if g, err := strconv.ParseUint(e[3], 10, 32); err == nil {
				u.GID = uint32(g)
			}
		}
	} else {
		e, ok := s.lookup(r, "etc/passwd", func(f []string) bool { return len(f) > 3 && f[0] == us })
		if !ok {
			return u, fmt.Errorf("user %q is not in the image's /etc/passwd; use a numeric id", us)
		}
		id, err1 := strconv.ParseUint(e[2], 10, 32)
		g, err2 := strconv.ParseUint(e[3], 10, 32)
		if err1 != nil || err2 != nil {
			return u, fmt.Errorf("the image's /etc/passwd entry of %q is malformed", us)
		}
		u.UID, u.GID = uint32(id), uint32(g)
	}
	if !hasGroup {
		return u, nil
	}
	if g, err := strconv.ParseUint(gs, 10, 32); err == nil {
		u.GID = uint32(g)
		return u, nil
	}
	e, ok := s.lookup(r, "etc/group", func(f []string) bool { return len(f) > 2 && f[0] == gs })
	if !ok {
		return u, fmt.Errorf("group %q is not in the image's /etc/group; use a numeric id", gs)
	}
	g, err := strconv.ParseUint(e[2], 10, 32)
	if err != nil {
		return u, fmt.Errorf("the image's /etc/group entry of %q is malformed", gs)
	}
	u.GID = uint32(g)
	return u, nil
}

// lookup finds the first line of the image's file (read from the topmost
// layer holding it) whose colon-separated fields match.
func (s *Store) lookup(r *Record, file string, match func([]string) bool) ([]string, bool) {
	for _, dir := range s.LayerDirs(r) {
		path := filepath.Join(dir, file)
		var st unix.Stat_t
		if unix.Lstat(path, &st) != nil {
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
			return nil, false // deleted by this layer (a whiteout)
		}
		// The image's files are not to be trusted: a link or a FIFO in
		// their place must not lead ursb to the caller's own files.
		root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, false
		}
		fd, err := unix.Openat2(root, file, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_NONBLOCK | unix.O_CLOEXEC | unix.O_NOFOLLOW, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS})
		unix.Close(root)
		if err != nil {
			return nil, false
		}
		f := os.NewFile(uintptr(fd), path)
		defer f.Close()
		if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
			return nil, false
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fields := strings.Split(sc.Text(), ":"); match(fields) {
				return fields, true
			}
		}
		return nil, false
	}
	return nil, false
}
