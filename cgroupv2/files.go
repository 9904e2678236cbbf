package cgroupv2

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// write, mkdir and rmdir are variables so that tests on a fake tree
// (plain directories) can play the kernel's part.
var (
	write = writeFile
	mkdir = func(dir string) error { return os.Mkdir(dir, 0o755) }
	rmdir = unix.Rmdir
)

// writeFile puts value into one cgroup interface file in a single write(2):
// the kernel parses each write on its own, so a split write would be two
// commands.
func writeFile(dir, name, value string) error {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte(value))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readKeyed parses the "key value" lines of files like memory.events,
// pids.events, cpu.stat and cgroup.events. A missing file is an empty
// map: the controller that owns it is not enabled for this cgroup.
func readKeyed(dir, name string) (map[string]uint64, error) {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]uint64{}, nil
	}
	if err != nil {
		return nil, err
	}
	return parseKeyed(data), nil
}

func parseKeyed(data []byte) map[string]uint64 {
	m := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			m[k] = n
		}
	}
	return m
}

// readUint reads a single-number file such as memory.current; "max" reads
// as 0 with max set. A missing file reads as 0.
func readUint(dir, name string) (n uint64, max bool, err error) {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	s := strings.TrimSpace(string(data))
	if s == "max" {
		return 0, true, nil
	}
	n, err = strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%s: unexpected content %q", filepath.Join(dir, name), s)
	}
	return n, false, nil
}

// controllerSet reads a space-separated controller list such as
// cgroup.controllers or cgroup.subtree_control.
func controllerSet(dir, name string) (map[string]bool, error) {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, c := range strings.Fields(string(data)) {
		set[c] = true
	}
	return set, nil
}

// procs lists the process ids in a cgroup's cgroup.procs.
func procs(dir string) ([]int, error) {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
