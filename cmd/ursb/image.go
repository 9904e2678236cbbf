package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/ursb/ursb/image"
	"github.com/ursb/ursb/state"
)

type pullCmd struct {
	TLSVerify bool   `name:"tls-verify" default:"true" negatable:"" help:"Require HTTPS with a verified certificate (--tls-verify=false: also plain HTTP, for a local registry)."`
	Platform  string `help:"Platform to choose from a multi-platform image, OS/ARCH[/VARIANT] (default: this host's)." placeholder:"OS/ARCH"`
	Quiet     bool   `short:"q" help:"Print only the image id."`
	Ref       string `arg:"" help:"The image: a registry reference (short names as podman resolves them), oci:DIR[:TAG], oci-archive:FILE or docker-archive:FILE."`
}

// imageFail is an ursb error of the image commands: exit 125.
func imageFail(err error) error { return &exitError{code: 125, msg: err.Error()} }

func notice(msg string) { fmt.Fprintln(os.Stderr, "ursb: notice:", msg) }

// interruptible is a context that ends on SIGINT or SIGTERM, so that an
// interrupted pull removes what it wrote.
func interruptible() (context.Context, func()) {
	return signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
}

func (c *pullCmd) Run() error {
	r, err := pull(c.Ref, c.TLSVerify, c.Platform, c.Quiet)
	if err != nil {
		return imageFail(err)
	}
	fmt.Println(r.ID)
	return nil
}

// pull stores the image ref names; progress goes to stderr unless quiet.
func pull(ref string, tlsVerify bool, platform string, quiet bool) (*image.Record, error) {
	o := image.PullOptions{}
	o.Insecure = !tlsVerify
	o.Notice = notice
	if platform != "" {
		p, err := image.ParsePlatform(platform)
		if err != nil {
			return nil, err
		}
		o.Platform = p
	}
	src, err := image.ParseSource(ref, o.Insecure, notice)
	if err != nil {
		return nil, err
	}
	if !quiet {
		fmt.Fprintf(os.Stderr, "Trying to pull %s...\n", src)
	}
	o.Progress = image.NewProgress(os.Stderr, quiet)
	s, err := image.Open()
	if err != nil {
		return nil, err
	}
	ctx, stop := interruptible()
	defer stop()
	return s.Pull(ctx, src, o)
}

type imagesCmd struct {
	Format string `default:"table" help:"Output format: table or json."`
	Quiet  bool   `short:"q" help:"Print only the image ids."`
	All    bool   `short:"a" help:"Accepted for podman's sake: ursb keeps no intermediate images."`
}

// imageEntry is one image in images --format json, with podman's keys.
type imageEntry struct {
	ID       string    `json:"Id"`
	Names    []string  `json:"Names"`
	Digest   string    `json:"Digest"`
	Size     int64     `json:"Size"`
	Created  time.Time `json:"CreatedAt"`
	Platform string    `json:"Platform"`
	Layers   int       `json:"Layers"`
	InUse    []string  `json:"Containers,omitempty"`
}

func (c *imagesCmd) Run() error {
	if c.Format != "table" && c.Format != "json" {
		return imageFail(fmt.Errorf("unknown --format %q; use table or json", c.Format))
	}
	s, err := image.Open()
	if err != nil {
		return imageFail(err)
	}
	images, err := s.Images()
	if err != nil {
		return imageFail(err)
	}
	if c.Quiet {
		for _, r := range images {
			fmt.Println(r.ShortID())
		}
		return nil
	}
	if c.Format == "json" {
		list := []imageEntry{}
		for _, r := range images {
			users, _ := s.Users(r.ID)
			list = append(list, imageEntry{ID: r.ID, Names: r.Names, Digest: r.Digest, Size: r.Size, Created: r.Created, Platform: r.Platform, Layers: len(r.Layers), InUse: users})
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
	for _, r := range images {
		names := r.Names
		if len(names) == 0 {
			names = []string{"<none>:<none>"}
		}
		for _, n := range names {
			repo, tag := splitName(n)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", repo, tag, r.ShortID(), ago(r.Created), image.HumanSize(r.Size))
		}
	}
	return tw.Flush()
}

// splitName cuts a full name into podman's REPOSITORY and TAG columns.
func splitName(n string) (string, string) {
	if repo, digest, ok := strings.Cut(n, "@"); ok {
		return repo, digest
	}
	if i := strings.LastIndex(n, ":"); i > strings.LastIndex(n, "/") {
		return n[:i], n[i+1:]
	}
	return n, "<none>"
}

// lockedStore opens the image store and takes its lock: shared to read
// records while a pull or run may add to them, exclusive to remove.
func lockedStore(exclusive bool) (*image.Store, error) {
	s, err := image.Open()
	if err == nil {
		err = s.Lock(exclusive)
	}
	return s, err
}

type rmiCmd struct {
	Force bool     `short:"f" help:"Remove an image with several names at once, by id."`
	Refs  []string `arg:"" help:"Images, by name or id."`
}

func (c *rmiCmd) Run() error {
	s, err := lockedStore(true)
	if err != nil {
		return imageFail(err)
	}
	defer s.Unlock()
	var failed error
	for _, ref := range c.Refs {
		did, err := s.Remove(ref, c.Force)
		for _, d := range did {
			fmt.Println(d)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "ursb:", err)
			failed = err
		}
	}
	if err := s.Collect(); err != nil {
		return imageFail(err)
	}
	if failed != nil {
		code := 125
		if errors.Is(failed, image.ErrNoImage) && len(c.Refs) == 1 {
			code = 1
		}
		return &exitError{code: code}
	}
	return nil
}

type imagePruneCmd struct {
	All   bool `short:"a" help:"Remove every image no sandbox is made of, not only those without a name."`
	Force bool `short:"f" help:"Accepted for podman's sake: ursb does not ask."`
}

func (c *imagePruneCmd) Run() error {
	s, err := lockedStore(true)
	if err != nil {
		return imageFail(err)
	}
	defer s.Unlock()
	removed, err := s.Prune(c.All)
	for _, id := range removed {
		fmt.Println(id)
	}
	if err == nil {
		err = s.Collect()
	}
	if err != nil {
		return imageFail(err)
	}
	return nil
}

type imageInspectCmd struct {
	Refs []string `arg:"" help:"Images, by name or id."`
}

// imageInspect is what image inspect prints of one image: the record,
// the manifest and the config as stored.
type imageInspect struct {
	*image.Record
	Layers   []string        `json:"layerDirs"`
	Users    []string        `json:"sandboxes,omitempty"`
	Manifest json.RawMessage `json:"manifest"`
	Config   json.RawMessage `json:"config"`
}

func (c *imageInspectCmd) Run() error {
	s, err := image.Open()
	if err != nil {
		return imageFail(err)
	}
	var out []imageInspect
	for _, ref := range c.Refs {
		r, err := s.Lookup(ref)
		if err != nil {
			return imageFail(err)
		}
		m, err := s.ReadManifest(r)
		if err != nil {
			return imageFail(err)
		}
		cf, err := s.ReadConfig(r)
		if err != nil {
			return imageFail(err)
		}
		users, _ := s.Users(r.ID)
		out = append(out, imageInspect{Record: r, Layers: s.LayerDirs(r), Users: users, Manifest: m, Config: cf})
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// imageCmd groups podman's image subcommands.
type imageCmd struct {
	Pull    pullCmd         `cmd:"" help:"Pull an image into the store."`
	Ls      imagesCmd       `cmd:"" aliases:"list" help:"List the stored images."`
	Rm      rmiCmd          `cmd:"" help:"Remove images."`
	Prune   imagePruneCmd   `cmd:"" help:"Remove images that have no name (-a: every image no sandbox uses)."`
	Inspect imageInspectCmd `cmd:"" help:"Print what the store knows of images, as JSON."`
}

type systemCmd struct {
	Df systemDfCmd `cmd:"" help:"Show the disk used by images and sandboxes."`
}

type systemDfCmd struct{}

func (systemDfCmd) Run() error {
	s, err := image.Open()
	if err != nil {
		return imageFail(err)
	}
	images, err := s.Images()
	if err != nil {
		return imageFail(err)
	}
	active := 0
	var reclaimable int64
	for _, r := range images {
		if users, _ := s.Users(r.ID); len(users) > 0 {
			active++
		} else {
			reclaimable += r.Size
		}
	}
	_, bytes, err := s.DiskUsage()
	if err != nil {
		return imageFail(err)
	}
	sandboxes, sbActive, sbBytes := sandboxUsage()
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE")
	fmt.Fprintf(tw, "Images\t%d\t%d\t%s\t%s\n", len(images), active, image.HumanSize(bytes), image.HumanSize(min(reclaimable, bytes)))
	fmt.Fprintf(tw, "Sandboxes\t%d\t%d\t%s\t%s\n", sandboxes, sbActive, image.HumanSize(sbBytes), image.HumanSize(0))
	return tw.Flush()
}

type loginCmd struct {
	Username      string `short:"u" help:"User name at the registry."`
	Password      string `short:"p" help:"Password (prefer --password-stdin: a flag shows in ps)."`
	PasswordStdin bool   `name:"password-stdin" help:"Read the password from standard input."`
	TLSVerify     bool   `name:"tls-verify" default:"true" negatable:"" help:"Require HTTPS with a verified certificate."`
	Registry      string `arg:"" help:"The registry, like registry.example.com or localhost:5000."`
}

func (c *loginCmd) Run() error {
	pass := c.Password
	switch {
	case c.PasswordStdin:
		data, err := io.ReadAll(os.Stdin)
		if err != nil {
			return imageFail(err)
		}
		pass = strings.TrimRight(string(data), "\r\n")
	case pass == "" && term.IsTerminal(int(os.Stdin.Fd())):
		fmt.Fprint(os.Stderr, "Password: ")
		data, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return imageFail(err)
		}
		pass = string(data)
	}
	if c.Username == "" || pass == "" {
		return imageFail(errors.New("login needs -u USER and a password (-p, --password-stdin, or typed at the prompt)"))
	}
	ctx, stop := interruptible()
	defer stop()
	if err := image.Login(ctx, c.Registry, c.Username, pass, !c.TLSVerify); err != nil {
		return imageFail(err)
	}
	fmt.Println("Login Succeeded!")
	return nil
}

type logoutCmd struct {
	All      bool   `short:"a" help:"Remove the credentials of every registry."`
	Registry string `arg:"" optional:"" help:"The registry."`
}

func (c *logoutCmd) Run() error {
	if c.Registry == "" && !c.All {
		return imageFail(errors.New("logout needs a registry, or -a for all"))
	}
	if err := image.Logout(c.Registry); err != nil {
		return imageFail(err)
	}
	fmt.Printf("Removed login credentials for %s\n", c.Registry)
	return nil
}

// sandboxUsage counts the stored sandboxes, those running, and the bytes
// their changes hold that the caller can see (files a sandbox gave to a
// subordinate id in a directory of its own may not be).
func sandboxUsage() (total, running int, bytes int64) {
	entries, err := state.List()
	if err != nil {
		return 0, 0, 0
	}
	for _, e := range entries {
		total++
		if e.Running {
			running++
		}
		if e.Name == "" {
			continue
		}
		st, err := state.Lookup(e.Name)
		if err != nil {
			continue
		}
		_ = filepath.WalkDir(st.Dir, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if info, err := d.Info(); err == nil {
					bytes += info.Size()
				}
			}
			return nil
		})
	}
	return total, running, bytes
}
