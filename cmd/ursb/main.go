// Command ursb runs a command in a rootless sandbox: a user namespace in
// which the caller is root, with its own pid, mount, uts, ipc, network and
// cgroup namespaces.
package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"
	"unsafe"

	"github.com/alecthomas/kong"
	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/fuseoverlay"
	"github.com/ursb/ursb/sandbox"
	"github.com/ursb/ursb/userns"
)

// cli is the whole command line; each command lives in its own file.
type cli struct {
	Run     runCmd     `cmd:"" help:"Run a command in a new sandbox."`
	Create  createCmd  `cmd:"" help:"Make a named sandbox as run would, without starting it; 'ursb start' starts it."`
	Exec    execCmd    `cmd:"" help:"Run a command in a running sandbox."`
	Ps      psCmd      `cmd:"" help:"List sandboxes."`
	Stop    stopCmd    `cmd:"" help:"Stop sandboxes: their stop signal (SIGTERM), then SIGKILL after a grace period."`
	Kill    killCmd    `cmd:"" help:"Send a signal to sandboxes."`
	Wait    waitCmd    `cmd:"" help:"Wait until sandboxes exit and print their exit codes."`
	Start   startCmd   `cmd:"" help:"Start exited named sandboxes again, in the background."`
	Restart restartCmd `cmd:"" help:"Stop named sandboxes and start them again, in the background."`
	Rename  renameCmd  `cmd:"" help:"Give an exited named sandbox another name."`
	Rm      rmCmd      `cmd:"" help:"Remove sandboxes and everything they stored."`
	Pause   pauseCmd   `cmd:"" help:"Freeze every process of sandboxes (needs a cgroup)."`
	Unpause unpauseCmd `cmd:"" help:"Resume paused sandboxes."`
	Logs    logsCmd    `cmd:"" help:"Print the output of a detached sandbox."`
	Inspect inspectCmd `cmd:"" help:"Print everything ursb knows of a sandbox, as JSON."`
	Diff    diffCmd    `cmd:"" help:"Show what a named sandbox changed, or write the changes as a layer tar."`
	Cp      cpCmd      `cmd:"" help:"Copy files between the host and a named sandbox, running or stopped."`
	Stats   statsCmd   `cmd:"" help:"Show a running sandbox's memory, pids and cpu use (needs a cgroup)."`
	Top     topCmd     `cmd:"" help:"List the processes of a running sandbox, with their pids and uids inside it."`
	Port    portCmd    `cmd:"" help:"List the ports a sandbox publishes on the host."`
	Check   checkCmd   `cmd:"" help:"Show what this host offers ursb, with the fix for each missing piece."`
	Pull    pullCmd    `cmd:"" help:"Pull an image from a registry, an OCI layout or an archive into the store."`
	Images  imagesCmd  `cmd:"" help:"List the stored images."`
	Rmi     rmiCmd     `cmd:"" help:"Remove images from the store."`
	Image   imageCmd   `cmd:"" help:"Manage images: ls, rm, prune, inspect, pull."`
	System  systemCmd  `cmd:"" help:"Show the disk used by images and sandboxes (system df)."`
	Import  importCmd  `cmd:"" help:"Store a root filesystem tarball as a one-layer image (podman import)."`
	Commit  commitCmd  `cmd:"" help:"Store what a named sandbox wrote as a new image, on top of its image or --rootfs tree."`
	Save    saveCmd    `cmd:"" help:"Write a stored image to an OCI archive, digests kept, or a docker archive (load it with oci-archive:FILE or docker-archive:FILE)."`
	Push    pushCmd    `cmd:"" help:"Send a stored image to a registry."`
	Login   loginCmd   `cmd:"" help:"Store credentials for a registry in auth.json."`
	Logout  logoutCmd  `cmd:"" help:"Remove a registry's credentials from auth.json."`
	Unshare unshareCmd `cmd:"" help:"Run a command as root of a user namespace with your id mapping, and nothing else of a sandbox (podman unshare)."`
	Oci     ociCmd     `cmd:"" name:"oci" help:"The OCI runtime command line (runc's), for podman, buildah and containerd; also ursb started as *runc."`

	Version    versionCmd       `cmd:"" help:"Print ursb's version, commit, Go version and build tags."`
	Help       helpCmd          `cmd:"" help:"Show the help of ursb or of a command."`
	Completion completionCmd    `cmd:"" help:"Print the shell code that completes ursb's commands: ursb completion bash >> ~/.bashrc"`
	Man        manCmd           `cmd:"" help:"Print ursb's manual page: ursb man > ursb.1; man -l ursb.1"`
	V          kong.VersionFlag `name:"version" help:"Print ursb's version and exit."`
}

// exitError ends ursb with a code after printing its message, if any.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func main() {
	// ursb never writes a memory profile; sampling for one touches the
	// profiler's hash table, pages that every idle sandbox would keep.
	runtime.MemProfileRate = 0
	// Descriptors inherited from whoever started ursb must not reach the
	// sandbox (CVE-2024-21626): mark them all close-on-exec first.
	_ = unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
	// Re-executed from /proc/self/fd/N or /proc/self/exe, the kernel
	// would name these processes "4" or "exe" in ps; name them by role.
	// prctl names only the calling thread, and the main goroutine may
	// already run on another than the leader, whose name ps shows: the
	// leader is named through /proc/self/comm too.
	if strings.HasPrefix(os.Args[0], "ursb-") {
		_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(unsafe.StringData(os.Args[0]+"\x00"))), 0, 0, 0)
		_ = os.WriteFile("/proc/self/comm", []byte(os.Args[0]), 0)
	}
	if len(os.Args) > 1 && os.Args[1] == userns.JoinArg {
		userns.JoinChild()
	}
	if len(os.Args) > 1 && os.Args[1] == userns.EnterArg {
		userns.EnterChild()
	}
	switch os.Args[0] {
	case userns.InitArg0:
		userns.Init()
	case userns.ProbeArg0:
		os.Exit(0)
	case userns.ProbeMountsArg0:
		os.Exit(userns.ProbeMountsChild())
	case fuseoverlay.ProbeArg0:
		os.Exit(fuseoverlay.ProbeChild())
	case userns.StorageArg0:
		userns.StorageChild(storageTool)
	case userns.NestedInitArg0:
		userns.NestedInit()
	case sandbox.MonitorArg0:
		sandbox.MonitorMain()
	}
	completeIfAsked()
	args := os.Args[1:]
	if runcName(os.Args[0]) {
		args = append([]string{"oci"}, args...)
	}
	if len(args) > 0 && args[0] == "oci" {
		rest, version := ociArgs(args[1:])
		if version {
			fmt.Print(ociVersion())
			os.Exit(0)
		}
		args = append([]string{"oci"}, rest...)
	}
	os.Exit(run(args))
}

// runOnly is the command line when its first word is "run". kong reflects
// on every flag of every command it is given before it parses anything,
// over a millisecond at each start of a sandbox; run needs only its own.
type runOnly struct {
	Run runCmd `cmd:"" help:"Run a command in a new sandbox."`
}

// ociOnly is the command line when its first word is "oci", for the same
// reason.
type ociOnly struct {
	Oci ociCmd `cmd:"" name:"oci" help:"The OCI runtime command line (runc's), for podman, buildah and containerd; also ursb started as *runc."`
}

func run(args []string) int {
	var c any = &cli{}
	version := ""
	switch {
	case len(args) > 0 && args[0] == "run":
		c = &runOnly{}
	case len(args) > 0 && args[0] == "oci":
		// An engine runs ursb several times per container.
		c = &ociOnly{}
	default:
		version = strings.TrimSuffix(versionText(), "\n")
	}
	parser, err := kong.New(c,
		kong.Name("ursb"),
		kong.Vars{"version": version},
		kong.Description("A rootless sandbox: run a command as root in a user namespace, without sudo."),
		kong.Exit(func(code int) { os.Exit(code) }),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ursb:", err)
		return 125
	}
	ctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ursb: %s; see 'ursb --help'\n", oneLine(err.Error()))
		return 125
	}
	err = ctx.Run()
	var ee *exitError
	var se *sandbox.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ee.msg != "" {
			fmt.Fprintln(os.Stderr, "ursb:", oneLine(ee.msg))
		}
		return ee.code
	case errors.As(err, &se):
		if se.Msg != "" {
			fmt.Fprintln(os.Stderr, "ursb:", oneLine(se.Msg))
		}
		return se.Code
	default:
		fmt.Fprintln(os.Stderr, "ursb:", oneLine(err.Error()))
		return 125
	}
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
