package main

import (
	"fmt"
	"os"

	"github.com/ursb/ursb/cgroupv2"
	"github.com/ursb/ursb/fuseoverlay"
	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/slirp"
	"github.com/ursb/ursb/userns"
)

type checkCmd struct{}

// item is one line of 'ursb check'.
type item struct {
	name string
	err  error
	// essential items decide whether ursb can run at all.
	essential bool
}

func (c *checkCmd) Run() error {
	host := idmap.LookupHost()
	usernsErr := userns.ProbeUserNS()
	items := []item{
		{name: "unprivileged user namespaces", err: usernsErr, essential: true},
		{name: "newuidmap/newgidmap", err: wrap(host.HelperErr, "install them: "+idmap.FixHelpers)},
		{name: "subordinate id range for " + host.Username, err: wrap(host.RangeErr, "add one: "+idmap.FixRange(host.Username))},
		{name: "kernel overlayfs inside a user namespace", err: fuseoverlay.ProbeKernel()},
		{name: "fuse-overlayfs", err: fuseoverlay.ProbeFuse()},
	}
	if usernsErr == nil {
		items = append(items, containerItems()...)
	}
	for _, d := range []string{slirp.ModePasta, slirp.ModeSlirp4netns, slirp.ModeBuiltin} {
		_, err := slirp.Resolve(d)
		name := "network driver " + d
		if d == slirp.ModeBuiltin && err == nil && slirp.TunUsable() != nil {
			name += " (on a veth pair: /dev/net/tun is unusable)"
		}
		items = append(items, item{name: name, err: err})
	}
	if ok, detail := cgroupv2.Check(); ok {
		fmt.Printf("ok       delegated cgroup v2: %s\n", detail)
	} else {
		fmt.Printf("missing  delegated cgroup v2: %s\n", detail)
	}
	ok := true
	for _, it := range items {
		if it.err == nil {
			fmt.Printf("ok       %s\n", it.name)
			continue
		}
		fmt.Printf("missing  %s: %v\n", it.name, it.err)
		if it.essential {
			ok = false
		}
	}
	if mode, err := slirp.Resolve("auto"); err == nil {
		fmt.Printf("note     --net auto uses %s\n", mode)
	}
	plan, planErr := idmap.Resolve(idmap.Auto, host)
	if host.RunsAsRoot && planErr == nil {
		fmt.Printf("note     running as root: %s\n", plan.Notice)
	}
	if planErr == nil {
		if size, err := userns.SealedCopySize(plan.UID); err == nil && size > 0 {
			exe, _ := os.Executable()
			fmt.Printf("note     each running sandbox holds a sealed %d MiB copy of ursb in memory, since its root could otherwise write this binary (CVE-2019-5736); installed root-owned (sudo install -m 0755 %s /usr/local/bin/ursb) it does not\n", (size+1<<20-1)>>20, exe)
		}
	}
	if !ok {
		return &exitError{code: 1, msg: "ursb cannot run on this host; fix the lines marked missing above"}
	}
	return nil
}

func wrap(err error, fix string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%v; %s", err, fix)
}

// containerItems are what a container ursb runs in may refuse a sandbox,
// each with the option of the container that lifts it. Sandboxes run
// without them; the lines say what they get instead.
func containerItems() []item {
	l, err := userns.ProbeContainerLimits()
	if err != nil {
		return []item{{name: "probing the proc and sysfs mounts a sandbox makes", err: err}}
	}
	return []item{
		{name: "a /proc of each sandbox's own", err: wrap(l.Proc, "a new proc mount is refused: this /proc has masked paths, as a container's has, so sandboxes show it instead, with its processes; start the container with --security-opt unmask=/proc/* or unmask=ALL (podman) or --security-opt systempaths=unconfined (docker)")},
		{name: "a /sys of each sandbox's own", err: wrap(l.Sys, "a new sysfs mount is refused: this /sys has masked paths, as a container's has, so sandboxes show it read-only instead; start the container with --security-opt unmask=ALL (podman) or --security-opt systempaths=unconfined (docker)")},
		{name: "a host name of each sandbox's own", err: wrap(l.Hostname, "sethostname is denied, as a container's seccomp profile does without CAP_SYS_ADMIN, so sandboxes keep this host name; start the container with --security-opt seccomp=unconfined")},
	}
}
