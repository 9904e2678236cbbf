package userns

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// missingReason says why exec of the file at p, in the sandbox's root,
// found nothing to run: p is absent, or a symbolic link whose target is
// absent (what busybox --install -s makes when run outside the root it
// installs into, as tutorials do), or a program whose interpreter (its
// #! line's, or its ELF loader) is absent.
func missingReason(p string) string {
	var st unix.Stat_t
	if unix.Lstat(p, &st) != nil {
		return "no such file or directory in the sandbox"
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		if target, dangling := danglingTarget(p); dangling {
			return fmt.Sprintf("%s is a symbolic link to %s, which does not exist in the sandbox's root filesystem", p, target)
		}
	}
	if interp := interpreter(p); interp != "" {
		if unix.Stat(interp, &st) != nil {
			return fmt.Sprintf("its interpreter %s does not exist in the sandbox's root filesystem", interp)
		}
	}
	return "no such file or directory in the sandbox"
}

// danglingTarget follows the links from p and returns the first path that
// does not exist, if one does not.
func danglingTarget(p string) (string, bool) {
	for range 40 {
		target, err := os.Readlink(p)
		if err != nil {
			return p, os.IsNotExist(err)
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(p), target)
		}
		var st unix.Stat_t
		if unix.Lstat(target, &st) != nil {
			return target, true
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			return "", false
		}
		p = target
	}
	return "", false
}

// interpreter is the program the kernel runs for the file at p: its #!
// line's, or its ELF loader; "" when it names none.
func interpreter(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	head, _ := bufio.NewReader(f).Peek(256)
	if line, ok := bytes.CutPrefix(head, []byte("#!")); ok {
		line, _, _ = bytes.Cut(line, []byte("\n"))
		if fields := strings.Fields(string(line)); len(fields) > 0 {
			return fields[0]
		}
		return ""
	}
	e, err := elf.NewFile(f)
	if err != nil {
		return ""
	}
	for _, prog := range e.Progs {
		if prog.Type == elf.PT_INTERP {
			b := make([]byte, prog.Filesz)
			if _, err := prog.ReadAt(b, 0); err == nil {
				return strings.TrimRight(string(b), "\x00")
			}
		}
	}
	return ""
}
