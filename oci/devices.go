package oci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/spec"
)

// devicesDir is the directory of a container's state that holds the device
// nodes made for its linux.devices.
const devicesDir = "devices"

// node is one of config.json's linux.devices, checked: where it goes in
// the container, its type and permissions (as mknod takes them), its
// device number and its owner inside the container.
type node struct {
	path     string
	mode     uint32
	rdev     uint64
	uid, gid uint32
}

// deviceNodes checks config.json's linux.devices.
func deviceNodes(devs []specs.LinuxDevice) ([]node, error) {
	var out []node
	for _, d := range devs {
		p := filepath.Clean(d.Path)
		if !filepath.IsAbs(d.Path) || p == "/dev" || p == "/" {
			return nil, fmt.Errorf("linux.devices: %q is not the absolute path of a device node", d.Path)
		}
		n := node{path: p, mode: 0o666, rdev: unix.Mkdev(uint32(d.Major), uint32(d.Minor))}
		switch d.Type {
		case "c", "u":
			n.mode |= unix.S_IFCHR
		case "b":
			n.mode |= unix.S_IFBLK
		case "p":
			n.mode, n.rdev = unix.S_IFIFO|0o666, 0
		default:
			return nil, fmt.Errorf("linux.devices: %s has type %q; the types are c, u, b and p", d.Path, d.Type)
		}
		if d.FileMode != nil {
			n.mode = n.mode&unix.S_IFMT | uint32(d.FileMode.Perm())
		}
		if d.UID != nil {
			n.uid = *d.UID
		}
		if d.GID != nil {
			n.gid = *d.GID
		}
		out = append(out, n)
	}
	return out, nil
}

// makeDevices gives s the device nodes config.json asks for, as mounts of
// device nodes init binds over /dev's entries: a user namespace may not
// make one (mknod needs CAP_MKNOD in the host's). The host's own node is
// taken where it has the device at the same path, with its owner and
// mode: it is the one that works. Otherwise, where the caller is root, the
// node is made in the container's state directory dir, with the owner and
// mode config.json asks for; the kernel opens it only where that
// directory's file system allows devices (not on a nodev /run). A FIFO is
// made there by anyone.
func makeDevices(dir string, devs []specs.LinuxDevice, s *spec.Spec) error {
	nodes, err := deviceNodes(devs)
	if err != nil {
		return err
	}
	if len(nodes) == 0 {
		return nil
	}
	dd := filepath.Join(dir, devicesDir)
	if err := os.Mkdir(dd, 0o700); err != nil {
		return fmt.Errorf("creating the devices' directory: %w", err)
	}
	for i, n := range nodes {
		if n.mode&unix.S_IFMT != unix.S_IFIFO && hostHas(n) {
			s.Mounts = append(s.Mounts, spec.Mount{Kind: spec.MountDevice, Source: n.path, Target: n.path})
			continue
		}
		uid, uok := idmap.ToHost(s.UIDMap, n.uid)
		gid, gok := idmap.ToHost(s.GIDMap, n.gid)
		if !uok || !gok {
			return fmt.Errorf("linux.devices: %s is to be owned by %d:%d, which the container does not map", n.path, n.uid, n.gid)
		}
		src := filepath.Join(dd, strconv.Itoa(i))
		if err := unix.Mknod(src, n.mode, int(n.rdev)); err != nil {
			if errors.Is(err, unix.EPERM) {
				return fmt.Errorf("linux.devices: %s: the host has no such device at that path to bind, and making one needs root", n.path)
			}
			return fmt.Errorf("linux.devices: making %s: %w", n.path, err)
		}
		// mknod's mode is narrowed by the umask.
		if err := unix.Chmod(src, n.mode&0o7777); err != nil {
			return fmt.Errorf("linux.devices: %s: %w", n.path, err)
		}
		if err := unix.Lchown(src, int(uid), int(gid)); err != nil {
			return fmt.Errorf("linux.devices: giving %s to %d:%d: %w", n.path, n.uid, n.gid, err)
		}
		s.Mounts = append(s.Mounts, spec.Mount{Kind: spec.MountDevice, Source: src, Target: n.path})
	}
	return nil
}

// hostHas tells whether the host has n's device at n's path.
func hostHas(n node) bool {
	var st unix.Stat_t
	return unix.Lstat(n.path, &st) == nil && st.Mode&unix.S_IFMT == n.mode&unix.S_IFMT && st.Rdev == n.rdev
}
