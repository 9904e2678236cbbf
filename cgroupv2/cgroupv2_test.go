package cgroupv2

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const hybridMountinfo = `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

func TestParseHierarchy(t *testing.T) {
	h, err := parseHierarchy(strings.NewReader(hybridMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	if h.mountpoint != "/sys/fs/cgroup/unified" || h.root != "/" {
		t.Errorf("hybrid: got mount %s root %s", h.mountpoint, h.root)
	}
	if !h.v1["memory"] || !h.v1["pids"] || h.v1["cpuset"] {
		t.Errorf("hybrid: v1 controllers %v", h.v1)
	}

	unified := "25 20 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate\n"
	if h, err = parseHierarchy(strings.NewReader(unified)); err != nil || h.mountpoint != "/sys/fs/cgroup" || len(h.v1) != 0 {
		t.Errorf("unified: got %+v, %v", h, err)
	}

	if _, err := parseHierarchy(strings.NewReader("30 22 0:27 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n")); !errors.Is(err, errNoCgroup2) {
		t.Errorf("no cgroup2: got %v", err)
	}
}

func TestParseOwnCgroup(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"9:name=systemd:/\n4:memory:/x\n0::/user.slice/user-1000.slice/session-2.scope\n", "/user.slice/user-1000.slice/session-2.scope", ""},
		{"0::/\n", "/", ""},
		{"0::/../../other\n", "", "outside its cgroup namespace"},
		{"4:memory:/x\n", "", "no 0:: line"},
	} {
		got, err := parseOwnCgroup(strings.NewReader(tc.in))
		if got != tc.want || (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: got %q, %v; want %q, error containing %q", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestHierarchyDir(t *testing.T) {
	h := hierarchy{mountpoint: "/sys/fs/cgroup", root: "/"}
	if d, err := h.dir("/user.slice/a"); err != nil || d != "/sys/fs/cgroup/user.slice/a" {
		t.Errorf("got %s, %v", d, err)
	}
	if d, err := h.dir("/"); err != nil || d != "/sys/fs/cgroup" {
		t.Errorf("root: got %s, %v", d, err)
	}
	// A mount made inside a cgroup namespace shows a subtree.
	h.root = "/ctr"
	if d, err := h.dir("/ctr/a"); err != nil || d != "/sys/fs/cgroup/a" {
		t.Errorf("subtree: got %s, %v", d, err)
	}
	if _, err := h.dir("/other"); err == nil {
		t.Error("a cgroup outside the mount resolved")
	}
	if got := h.cgroup("/sys/fs/cgroup/a/b"); got != "/ctr/a/b" {
		t.Errorf("cgroup: got %s", got)
	}
}

func TestPlan(t *testing.T) {
	const mib = 1 << 20
	type kv = map[string]string
	for _, tc := range []struct {
		name string
		l    Limits
		want kv
		ctrl []string
		err  string
	}{
		{"none", Limits{}, kv{}, nil, ""},
		{"memory implies swap like podman", Limits{MemoryBytes: 64 * mib}, kv{"memory.max": "67108864", "memory.swap.max": "67108864"}, []string{"memory"}, ""},
		{"memory-swap is a total", Limits{MemoryBytes: 64 * mib, MemorySwapBytes: 128 * mib}, kv{"memory.max": "67108864", "memory.swap.max": "67108864"}, []string{"memory"}, ""},
		{"memory-swap equal means no swap", Limits{MemoryBytes: 64 * mib, MemorySwapBytes: 64 * mib}, kv{"memory.max": "67108864", "memory.swap.max": "0"}, []string{"memory"}, ""},
		{"memory-swap -1", Limits{MemoryBytes: 64 * mib, MemorySwapBytes: -1}, kv{"memory.max": "67108864", "memory.swap.max": "max"}, []string{"memory"}, ""},
		{"memory-swap below memory", Limits{MemoryBytes: 64 * mib, MemorySwapBytes: 32 * mib}, nil, nil, "--memory-swap 32 MiB is below --memory 64 MiB"},
		{"memory-swap alone", Limits{MemorySwapBytes: 32 * mib}, nil, nil, "needs --memory too"},
		{"memory -1 is no limit", Limits{MemoryBytes: -1}, kv{}, nil, ""},
		{"memory negative", Limits{MemoryBytes: -5}, nil, nil, "not a size"},
		{"pids", Limits{PidsLimit: 64}, kv{"pids.max": "64"}, []string{"pids"}, ""},
		{"pids -1 is no limit", Limits{PidsLimit: -1}, kv{}, nil, ""},
		{"pids negative", Limits{PidsLimit: -2}, nil, nil, "not a count"},
		{"half a cpu", Limits{CPUs: 0.5}, kv{"cpu.max": "50000 100000"}, []string{"cpu"}, ""},
		{"two cpus", Limits{CPUs: 2}, kv{"cpu.max": "200000 100000"}, []string{"cpu"}, ""},
		{"cpus rounding", Limits{CPUs: 0.333333}, kv{"cpu.max": "33333 100000"}, []string{"cpu"}, ""},
		{"cpus too small", Limits{CPUs: 0.001}, nil, nil, "give at least 0.01"},
		{"cpus too many", Limits{CPUs: 3}, nil, nil, "more than the 2 CPUs"},
		{"cpus negative", Limits{CPUs: -1}, nil, nil, "not a CPU count"},
		{"cpuset", Limits{CpusetCpus: "0-1,3"}, kv{"cpuset.cpus": "0-1,3"}, []string{"cpuset"}, ""},
		{"cpuset garbage", Limits{CpusetCpus: "a"}, nil, nil, "not a CPU list"},
		{"cpuset reversed", Limits{CpusetCpus: "3-1"}, nil, nil, "not a CPU list"},
		{"cpu-shares default weight", Limits{CPUShares: 1024}, kv{"cpu.weight": "39"}, []string{"cpu"}, ""},
		{"cpu-shares ends", Limits{CPUShares: 262144}, kv{"cpu.weight": "10000"}, []string{"cpu"}, ""},
		{"cpu-shares lowest", Limits{CPUShares: 2}, kv{"cpu.weight": "1"}, []string{"cpu"}, ""},
		{"cpu-shares out of range", Limits{CPUShares: 1}, nil, nil, "out of range"},
		{"memory-reservation", Limits{MemoryLowBytes: 32 * mib}, kv{"memory.low": "33554432"}, []string{"memory"}, ""},
		{"memory-reservation above memory", Limits{MemoryBytes: 16 * mib, MemoryLowBytes: 32 * mib}, nil, nil, "above --memory"},
		{"all, in controller order", Limits{MemoryBytes: mib, PidsLimit: 5, CPUs: 1, CpusetCpus: "0"},
			kv{"memory.max": "1048576", "memory.swap.max": "1048576", "pids.max": "5", "cpu.max": "100000 100000", "cpuset.cpus": "0"},
			[]string{"cpuset", "cpu", "memory", "pids"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			settings, err := plan(tc.l, 2)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := kv{}
			for _, s := range settings {
				got[s.file] = s.value
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("writes %v, want %v", got, tc.want)
			}
			if ctrl := required(settings); !slices.Equal(ctrl, tc.ctrl) {
				t.Errorf("controllers %v, want %v", ctrl, tc.ctrl)
			}
		})
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{
		512:               "512 B",
		64 << 10:          "64 KiB",
		64 << 20:          "64 MiB",
		1 << 30:           "1 GiB",
		3 << 29:           "1.5 GiB",
		100000000:         "95.4 MiB",
		(1 << 30) + 1:     "1 GiB",
		5 << 40:           "5 TiB",
		0:                 "0 B",
		(64 << 20) + 5000: "64 MiB",
	} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestDescribe(t *testing.T) {
	l := Limits{MemoryBytes: 64 << 20, PidsLimit: 64}
	if got := Describe(l, Events{}); len(got) != 0 {
		t.Errorf("no events: %q", got)
	}
	got := Describe(l, Events{OOMKills: 1, PidsMax: 3})
	want := []string{
		"out of memory: the sandbox reached its 64 MiB limit",
		"warning: the sandbox reached its limit of 64 processes (--pids-limit); fork failed 3 times",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	got = Describe(Limits{}, Events{OOMKills: 2, PidsMax: 1})
	want = []string{
		"out of memory: the sandbox reached a memory limit set above it (2 processes killed)",
		"warning: the sandbox reached a process limit set above it; fork failed once",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if got := Describe(Limits{MemoryBytes: 3 << 29}, Events{OOMKills: 1}); got[0] != "out of memory: the sandbox reached its 1.5 GiB limit" {
		t.Errorf("got %q", got)
	}
}

// fakeTree is a cgroup hierarchy made of plain directories, with the
// kernel's semantics for the few files ursb writes played by a fake write.
type fakeTree struct {
	t      *testing.T
	mount  string
	owners map[string]int
	marks  map[string]bool
	writes []string
}

const user = 1000

func newFakeTree(t *testing.T) *fakeTree {
	ft := &fakeTree{t: t, mount: t.TempDir(), owners: map[string]int{}, marks: map[string]bool{}}
	oldWrite, oldRmdir := write, rmdir
	t.Cleanup(func() { write, rmdir = oldWrite, oldRmdir })
	write = ft.write
	oldMkdir := mkdir
	t.Cleanup(func() { mkdir = oldMkdir })
	mkdir = ft.mkdir
	rmdir = os.RemoveAll
	ft.cgroup("/", 0, "cpuset cpu io memory hugetlb pids", "")
	return ft
}

// cgroup makes a fake cgroup owned by uid, offering controllers and with
// pids in it.
func (ft *fakeTree) cgroup(cg string, uid int, controllers, pids string) string {
	dir := filepath.Join(ft.mount, cg)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		ft.t.Fatal(err)
	}
	for name, content := range map[string]string{
		"cgroup.controllers": controllers, "cgroup.subtree_control": "", "cgroup.procs": pids,
		"cgroup.events": "populated 0\nfrozen 0\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			ft.t.Fatal(err)
		}
	}
	ft.owners[dir] = uid
	ft.owners[filepath.Join(dir, "cgroup.procs")] = uid
	return dir
}

func (ft *fakeTree) env(own string, uid int) env {
	return env{
		h: hierarchy{mountpoint: ft.mount, root: "/", v1: map[string]bool{}}, uid: uid, own: own,
		owner: func(p string) (int, error) {
			if uid, ok := ft.owners[p]; ok {
				return uid, nil
			}
			if _, err := os.Stat(p); err != nil {
				return -1, err
			}
			return user, nil // created by the code under test
		},
		marked: func(dir string) bool { return ft.marks[dir] },
	}
}

func (ft *fakeTree) write(dir, name, value string) error {
	rel, _ := filepath.Rel(ft.mount, dir)
	ft.writes = append(ft.writes, "/"+rel+"/"+name+"="+value)
	path := filepath.Join(dir, name)
	switch name {
	case "cgroup.subtree_control":
		c := strings.TrimPrefix(value, "+")
		offered := ft.read(filepath.Join(dir, "cgroup.controllers"))
		if !slices.Contains(strings.Fields(offered), c) {
			return &os.PathError{Op: "write", Path: path, Err: unix.ENOENT}
		}
		if ft.read(filepath.Join(dir, "cgroup.procs")) != "" {
			return &os.PathError{Op: "write", Path: path, Err: unix.EBUSY}
		}
		return os.WriteFile(path, []byte(strings.TrimSpace(ft.read(path)+" "+c)), 0o644)
	case "cgroup.procs":
		parent := filepath.Dir(dir)
		from := strings.Fields(ft.read(filepath.Join(parent, "cgroup.procs")))
		from = slices.DeleteFunc(from, func(p string) bool { return p == value })
		if err := os.WriteFile(filepath.Join(parent, "cgroup.procs"), []byte(strings.Join(from, " ")), 0o644); err != nil {
			return err
		}
		return os.WriteFile(path, []byte(strings.TrimSpace(ft.read(path)+" "+value)), 0o644)
	}
	return os.WriteFile(path, []byte(value), 0o644)
}

// mkdir plays the kernel filling a new cgroup with its interface files,
// cgroup.controllers taken from the parent's subtree_control.
func (ft *fakeTree) mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	for name, content := range map[string]string{
		"cgroup.controllers":     ft.read(filepath.Join(filepath.Dir(dir), "cgroup.subtree_control")),
		"cgroup.subtree_control": "", "cgroup.procs": "", "cgroup.events": "populated 0\nfrozen 0\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (ft *fakeTree) read(path string) string {
	data, _ := os.ReadFile(path)
	return strings.TrimSpace(string(data))
}

const (
	slice = "/user.slice/user-1000.slice"
	svc   = slice + "/user@1000.service"
	all   = "cpuset cpu io memory pids"
)

// systemdTree lays out what systemd makes for a logged-in user.
func systemdTree(t *testing.T, delegated string) *fakeTree {
	ft := newFakeTree(t)
	ft.cgroup("/user.slice", 0, all, "")
	ft.cgroup(slice, 0, all, "")
	ft.cgroup(svc, user, delegated, "")
	ft.cgroup(svc+"/init.scope", user, "", "42")
	ft.cgroup(slice+"/session-2.scope", 0, "", "77")
	return ft
}

func mustSettings(t *testing.T, l Limits) []setting {
	t.Helper()
	s, err := plan(l, 2)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLocate(t *testing.T) {
	ft := systemdTree(t, all)
	p, err := locate(ft.env(svc+"/init.scope", user), "")
	if err != nil || p.parent != filepath.Join(ft.mount, svc) || p.root != p.parent {
		t.Fatalf("user@.service: got %+v, %v", p, err)
	}

	// A delegated scope inside the user's tree is its own delegation.
	ft.cgroup(svc+"/app.slice", user, "", "")
	scope := ft.cgroup(svc+"/app.slice/run-1.scope", user, "", "50")
	ft.marks[scope] = true
	if p, err = locate(ft.env(svc+"/app.slice/run-1.scope", user), ""); err != nil || p.parent != scope {
		t.Fatalf("marked scope: got %+v, %v", p, err)
	}

	for _, tc := range []struct {
		own  string
		uid  int
		want string
	}{
		{slice + "/session-2.scope", user, "your cgroup /user.slice/user-1000.slice/session-2.scope belongs to root"},
		{"/", user, "is the root of the tree"},
		{svc + "/init.scope", 0, "as root"},
	} {
		_, err := locate(ft.env(tc.own, tc.uid), "")
		if !errors.Is(err, ErrNoDelegation) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("own %s uid %d: got %v, want ErrNoDelegation saying %q", tc.own, tc.uid, err, tc.want)
		}
	}
}

func TestLocateCgroupParent(t *testing.T) {
	ft := systemdTree(t, all)
	own := svc + "/init.scope"
	e := ft.env(own, user)
	for _, flag := range []string{svc + "/builds", filepath.Join(ft.mount, svc, "builds"), "builds"} {
		p, err := locate(e, flag)
		if err != nil || p.parent != filepath.Join(ft.mount, svc, "builds") || p.root != filepath.Join(ft.mount, svc) {
			t.Errorf("%s: got %+v, %v", flag, p, err)
		}
	}
	for flag, want := range map[string]string{
		slice + "/other":  "belongs to root, not you",
		"/":               "below the root of the tree",
		"../../../../etc": "below the root of the tree",
	} {
		if _, err := locate(e, flag); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error saying %q", flag, err, want)
		}
	}
	// Owned, but the only way there crosses a cgroup of root's.
	ft.cgroup("/ursb-admin-made", user, all, "")
	if _, err := locate(e, "/ursb-admin-made"); err == nil || !strings.Contains(err.Error(), "meet only at /, which belongs to root") {
		t.Errorf("unreachable parent: got %v", err)
	}
	// Root may go anywhere it names.
	if p, err := locate(ft.env(own, 0), "/ursb.slice/x"); err != nil || p.root != filepath.Join(ft.mount, "/ursb.slice") {
		t.Errorf("root: got %+v, %v", p, err)
	}
}

func TestPrepareSystemd(t *testing.T) {
	ft := systemdTree(t, all)
	e := ft.env(svc+"/init.scope", user)
	l := Limits{MemoryBytes: 64 << 20, PidsLimit: 64, CPUs: 0.5, CpusetCpus: "0"}
	leaf, err := prepare(e, "abc123", "", mustSettings(t, l))
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(ft.mount, svc, "ursb-abc123")
	if leaf.Path() != want || leaf.FD() < 0 {
		t.Fatalf("leaf %s fd %d, want %s", leaf.Path(), leaf.FD(), want)
	}
	if got := ft.read(filepath.Join(ft.mount, svc, "cgroup.subtree_control")); got != "cpuset cpu memory pids" {
		t.Errorf("subtree_control %q", got)
	}
	for file, v := range map[string]string{"memory.max": "67108864", "pids.max": "64", "cpu.max": "50000 100000", "cpuset.cpus": "0"} {
		if got := ft.read(filepath.Join(want, file)); got != v {
			t.Errorf("%s = %q, want %q", file, got, v)
		}
	}
	// The leaf is locked while held: Sweep leaves it alone.
	if removed := sweep(filepath.Join(ft.mount, svc)); len(removed) != 0 {
		t.Errorf("swept a held leaf: %v", removed)
	}
	if err := leaf.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(want); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leaf still there after Remove: %v", err)
	}
	if leaf.FD() != -1 {
		t.Error("Remove left the descriptor open")
	}
	if err := leaf.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func TestPrepareNoLimitsStillMakesLeaf(t *testing.T) {
	ft := systemdTree(t, all)
	leaf, err := prepare(ft.env(svc+"/init.scope", user), "ab", "", nil)
	if err != nil || leaf == nil {
		t.Fatalf("got %v, %v", leaf, err)
	}
	defer leaf.Remove()
	// The stats controllers come for free here.
	if got := ft.read(filepath.Join(ft.mount, svc, "cgroup.subtree_control")); got != "cpu memory pids" {
		t.Errorf("subtree_control %q", got)
	}
}

func TestPrepareNoDelegation(t *testing.T) {
	ft := systemdTree(t, all)
	e := ft.env(slice+"/session-2.scope", user)
	leaf, err := prepare(e, "ab", "", nil)
	if leaf != nil || err != nil {
		t.Errorf("no limits: got %v, %v; want no leaf and no error", leaf, err)
	}
	var nilLeaf *Leaf
	if nilLeaf.FD() != -1 || nilLeaf.Path() != "" || nilLeaf.Remove() != nil || nilLeaf.Kill() != nil {
		t.Error("a nil leaf is not inert")
	}
	_, err = prepare(e, "ab", "", mustSettings(t, Limits{MemoryBytes: 64 << 20}))
	if !errors.Is(err, ErrNoDelegation) || !strings.Contains(err.Error(), "cannot apply --memory 64 MiB: your cgroup") ||
		!strings.Contains(err.Error(), "no systemd user manager answers here") || !strings.Contains(err.Error(), "--cgroup-parent /ursb-") ||
		strings.Contains(err.Error(), "systemd-run") || strings.Contains(err.Error(), "\n") {
		t.Errorf("got %v", err)
	}
	e.h.v1 = map[string]bool{"memory": true}
	_, err = prepare(e, "ab", "", mustSettings(t, Limits{MemoryBytes: 64 << 20}))
	if err == nil || !strings.Contains(err.Error(), "binds memory to cgroup v1 (hybrid mode)") {
		t.Errorf("hybrid: got %v", err)
	}
}

func TestControllerNotDelegated(t *testing.T) {
	ft := systemdTree(t, "memory pids")
	_, err := prepare(ft.env(svc+"/init.scope", user), "ab", "", mustSettings(t, Limits{CpusetCpus: "0"}))
	if err == nil || !strings.Contains(err.Error(), "cannot apply --cpuset-cpus 0: the cpuset controller is not delegated to "+svc+" (it offers memory pids)") ||
		!strings.Contains(err.Error(), "Delegate=memory pids cpu cpuset io") {
		t.Errorf("systemd: got %v", err)
	}
	if _, err := os.Stat(filepath.Join(ft.mount, svc, "ursb-ab")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a leaf was left behind by a failed Prepare")
	}

	plain := newFakeTree(t)
	plain.cgroup("/alice", user, "pids", "")
	plain.cgroup("/alice/shell", user, "", "9")
	_, err = prepare(plain.env("/alice/shell", user), "ab", "", mustSettings(t, Limits{MemoryBytes: 1 << 30}))
	if err == nil || !strings.Contains(err.Error(), "as root, run echo +memory > "+filepath.Join(plain.mount, "cgroup.subtree_control")) {
		t.Errorf("plain: got %v", err)
	}
}

func TestEvacuateCaller(t *testing.T) {
	// A directory chowned to the user with the user's shell right in it:
	// the shell must move into a leaf before controllers can be enabled.
	ft := newFakeTree(t)
	ft.cgroup("/alice", user, all, "9 10")
	leaf, err := prepare(ft.env("/alice", user), "ab", "", mustSettings(t, Limits{PidsLimit: 10}))
	if err != nil {
		t.Fatal(err)
	}
	defer leaf.Remove()
	if got := ft.read(filepath.Join(ft.mount, "alice", "cgroup.procs")); got != "" {
		t.Errorf("processes left in /alice: %q", got)
	}
	if got := ft.read(filepath.Join(ft.mount, "alice", callerLeaf, "cgroup.procs")); got != "9 10" {
		t.Errorf("processes in %s: %q", callerLeaf, got)
	}
	if got := ft.read(filepath.Join(ft.mount, "alice", "cgroup.subtree_control")); !strings.Contains(got, "pids") {
		t.Errorf("subtree_control %q", got)
	}
	if leaf.Path() != filepath.Join(ft.mount, "alice", "ursb-ab") {
		t.Errorf("leaf at %s", leaf.Path())
	}

	// Processes that are not the caller's are not moved.
	ft2 := newFakeTree(t)
	ft2.cgroup("/alice", user, all, "5")
	ft2.cgroup("/alice/shell", user, "", "9")
	_, err = prepare(ft2.env("/alice/shell", user), "ab", "", mustSettings(t, Limits{PidsLimit: 10}))
	if err == nil || !strings.Contains(err.Error(), "it holds processes") {
		t.Errorf("foreign processes: got %v", err)
	}
}

func TestCgroupParentCreatedAndEnabled(t *testing.T) {
	ft := systemdTree(t, all)
	leaf, err := prepare(ft.env(svc+"/init.scope", user), "ab", "builds/ci", mustSettings(t, Limits{MemoryBytes: 1 << 30}))
	if err != nil {
		t.Fatal(err)
	}
	defer leaf.Remove()
	if leaf.Path() != filepath.Join(ft.mount, svc, "builds/ci/ursb-ab") {
		t.Errorf("leaf at %s", leaf.Path())
	}
	var enables []string
	for _, w := range ft.writes {
		if strings.Contains(w, "subtree_control=+memory") {
			enables = append(enables, w)
		}
	}
	want := []string{svc + "/cgroup.subtree_control=+memory", svc + "/builds/cgroup.subtree_control=+memory", svc + "/builds/ci/cgroup.subtree_control=+memory"}
	if !slices.Equal(enables, want) {
		t.Errorf("enabled top-down as %q, want %q", enables, want)
	}
}

func TestSweep(t *testing.T) {
	ft := systemdTree(t, all)
	parent := filepath.Join(ft.mount, svc)
	dead := ft.cgroup(svc+"/ursb-dead01", user, "", "")
	alive := ft.cgroup(svc+"/ursb-a11e", user, "", "33")
	if err := os.WriteFile(filepath.Join(alive, "cgroup.events"), []byte("populated 1\nfrozen 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	held := ft.cgroup(svc+"/ursb-be1d", user, "", "")
	fd, err := unix.Open(held, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	ft.cgroup(svc+"/"+callerLeaf, user, "", "")
	ft.cgroup(svc+"/ursb-not-a-sandbox", user, "", "")

	removed := sweep(parent)
	if !slices.Equal(removed, []string{dead}) {
		t.Errorf("swept %v, want only %s", removed, dead)
	}
	for _, n := range []string{"ursb-a11e", "ursb-be1d", callerLeaf, "ursb-not-a-sandbox"} {
		if _, err := os.Stat(filepath.Join(parent, n)); err != nil {
			t.Errorf("%s was removed", n)
		}
	}
}

func TestCheck(t *testing.T) {
	ft := systemdTree(t, "memory pids")
	ok, detail := check(ft.env(svc+"/init.scope", user))
	if !ok || detail != "delegated cgroup "+svc+" (cgroup v2 at "+ft.mount+"), controllers: memory pids; not delegated: cpuset cpu io (as root: systemctl edit user@.service, add [Service] Delegate=memory pids cpu cpuset io, log in again)" {
		t.Errorf("got %v, %q", ok, detail)
	}
	ok, detail = check(ft.env(slice+"/session-2.scope", user))
	if ok || !strings.Contains(detail, "limits unavailable: your cgroup") || !strings.Contains(detail, "root must delegate one") || strings.Contains(detail, "systemd-run") {
		t.Errorf("got %v, %q", ok, detail)
	}
}

func TestEventsAndStats(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"memory.events":  "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n",
		"pids.events":    "max 7\n",
		"memory.current": "1234\n",
		"memory.peak":    "67108864\n",
		"pids.current":   "3\n",
		"cpu.stat":       "usage_usec 500\nuser_usec 400\nsystem_usec 100\nnr_periods 10\nnr_throttled 4\nthrottled_usec 900\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l := &Leaf{path: dir, fd: -1}
	ev, err := l.Events()
	if err != nil || ev != (Events{OOMKills: 1, PidsMax: 7}) {
		t.Errorf("events %+v, %v", ev, err)
	}
	st, err := l.Stats()
	want := Stats{MemoryCurrent: 1234, MemoryPeak: 64 << 20, PidsCurrent: 3, CPUUsageUsec: 500, NrPeriods: 10, NrThrottled: 4, ThrottledUsec: 900}
	if err != nil || st != want {
		t.Errorf("stats %+v, %v; want %+v", st, err, want)
	}
	// Without the controllers the files are absent and read as zero.
	empty := &Leaf{path: t.TempDir(), fd: -1}
	if ev, err := empty.Events(); err != nil || ev != (Events{}) {
		t.Errorf("no controllers: %+v, %v", ev, err)
	}
}

func TestCommonAncestor(t *testing.T) {
	for _, tc := range [][3]string{
		{"/c/a/b", "/c/a/d", "/c/a"},
		{"/c/a", "/c/a/x/y", "/c/a"},
		{"/c/a", "/c/b", "/c"},
		{"/c", "/d", "/"},
	} {
		if got := commonAncestor(tc[0], tc[1]); got != tc[2] {
			t.Errorf("commonAncestor(%s, %s) = %s, want %s", tc[0], tc[1], got, tc[2])
		}
	}
}

func TestIsLeafName(t *testing.T) {
	for name, want := range map[string]bool{"ursb-0a1b": true, "ursb-": false, "ursb-caller": false, callerLeaf: false, "other": false, "ursb-" + strconv.Itoa(12): true} {
		if isLeafName(name) != want {
			t.Errorf("isLeafName(%q) != %v", name, want)
		}
	}
}

func TestParseHierarchyPrefersConventionalMount(t *testing.T) {
	mi := "40 30 0:37 /ctr /run/bind rw - cgroup2 cgroup2 rw\n41 30 0:37 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
	h, err := parseHierarchy(strings.NewReader(mi))
	if err != nil || h.mountpoint != "/sys/fs/cgroup" || h.root != "/" {
		t.Errorf("got %+v, %v", h, err)
	}
}
