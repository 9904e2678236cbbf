package image

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Transports an image can be read from besides a registry, named as
// podman names them.
const (
	TransportOCI           = "oci"
	TransportOCIArchive    = "oci-archive"
	TransportDockerArchive = "docker-archive"
)

// Source is where an image is read from.
type Source struct {
	// Transport is "" for a registry, else one of the Transport constants.
	Transport string
	// Refs are the registry references to try, in order: one for a
	// fully qualified name, one per search registry for a short name.
	Refs []name.Reference
	// Path is the layout directory or archive file of the other
	// transports, and Tag the image chosen in it (may be empty).
	Path, Tag string
}

// String is the source as the user would write it.
func (s Source) String() string {
	if s.Transport == "" {
		return s.Refs[0].String()
	}
	if s.Tag != "" {
		return s.Transport + ":" + s.Path + ":" + s.Tag
	}
	return s.Transport + ":" + s.Path
}

// StoreName is the name an image from this source is stored under: the
// registry reference, or localhost/NAME:TAG for a file (as podman names
// loaded images).
func (s Source) StoreName(ref name.Reference) string {
	if ref != nil {
		return FullName(ref)
	}
	base := strings.TrimSuffix(filepath.Base(s.Path), filepath.Ext(s.Path))
	tag := "latest"
	if s.Tag != "" {
		if r, err := name.ParseReference(s.Tag, name.WithDefaultRegistry("localhost")); err == nil && strings.Contains(s.Tag, "/") {
			return FullName(r)
		}
		tag = s.Tag
	}
	return "localhost/" + strings.ToLower(base) + ":" + tag
}

// FullName writes a reference in full: registry, repository and tag or
// digest (docker.io/library/debian:12).
func FullName(ref name.Reference) string {
	repo := ref.Context().RegistryStr() + "/" + ref.Context().RepositoryStr()
	switch r := ref.(type) {
	case name.Tag:
		return repo + ":" + r.TagStr()
	case name.Digest:
		return repo + "@" + r.DigestStr()
	}
	return ref.Name()
}

// ParseSource reads an image source the way podman does: TRANSPORT:PATH
// for the file transports, else a registry reference. insecure allows
// plain HTTP and unverified TLS. notice is told when a short name is
// resolved to Docker Hub for want of search registries.
func ParseSource(s string, insecure bool, notice func(string)) (Source, error) {
	for _, t := range []string{TransportOCIArchive, TransportDockerArchive, TransportOCI} {
		rest, ok := strings.CutPrefix(s, t+":")
		if !ok {
			continue
		}
		src := Source{Transport: t, Path: rest}
		if t == TransportOCI || t == TransportDockerArchive {
			// oci:DIR:TAG, docker-archive:FILE:NAME:TAG as podman
			// takes them; a path holding ':' cannot be named.
			if p, tag, ok := strings.Cut(rest, ":"); ok {
				src.Path, src.Tag = p, tag
			}
		}
		if src.Path == "" {
			return Source{}, fmt.Errorf("%s: no path given; write %s:PATH", s, t)
		}
		abs, err := filepath.Abs(src.Path)
		if err != nil {
			return Source{}, err
		}
		src.Path = abs
		return src, nil
	}
	refs, err := ParseName(s, insecure, notice)
	if err != nil {
		return Source{}, err
	}
	return Source{Refs: refs}, nil
}

// ParseName turns a registry reference into the references to try:
// itself when it names a registry, else one per unqualified search
// registry of registries.conf, or docker.io when there are none.
func ParseName(s string, insecure bool, notice func(string)) ([]name.Reference, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	if s == "" || s != strings.TrimSpace(s) {
		return nil, fmt.Errorf("%q is not an image reference", s)
	}
	if qualified(s) {
		ref, err := name.ParseReference(s, append(opts, name.StrictValidation)...)
		if err != nil {
			return nil, fmt.Errorf("%q is not an image reference: %v", s, err)
		}
		return []name.Reference{ref}, nil
	}
	registries, err := SearchRegistries()
	if err != nil {
		return nil, err
	}
	if len(registries) == 0 {
		ref, err := name.ParseReference(s, opts...)
		if err != nil {
			return nil, fmt.Errorf("%q is not an image reference: %v", s, err)
		}
		if notice != nil {
			notice(fmt.Sprintf("short name %q resolved to %s (no unqualified-search-registries in registries.conf)", s, FullName(ref)))
		}
		return []name.Reference{ref}, nil
	}
	var refs []name.Reference
	for _, reg := range registries {
		ref, err := name.ParseReference(reg+"/"+s, append(opts, name.StrictValidation)...)
		if err != nil {
			return nil, fmt.Errorf("%q is not an image reference: %v", s, err)
		}
		refs = append(refs, ref)
	}
	return refs, nil
}

// qualified tells whether a reference names its registry: its first
// component has a dot or a port, or is localhost (Docker's rule).
func qualified(s string) bool {
	first, _, ok := strings.Cut(s, "/")
	return ok && (strings.ContainsAny(first, ".:") || first == "localhost")
}

// registriesConf lists where registries.conf is looked for, the user's
// own first, as podman does.
func registriesConf() []string {
	var files []string
	if f := os.Getenv("CONTAINERS_REGISTRIES_CONF"); f != "" {
		return []string{f}
	}
	config := os.Getenv("XDG_CONFIG_HOME")
	if home, err := os.UserHomeDir(); config == "" && err == nil {
		config = filepath.Join(home, ".config")
	}
	if config != "" {
		files = append(files, filepath.Join(config, "containers", "registries.conf"))
	}
	return append(files, "/etc/containers/registries.conf")
}

// SearchRegistries returns unqualified-search-registries from the first
// registries.conf found; none when no file sets it.
func SearchRegistries() ([]string, error) {
	for _, f := range registriesConf() {
		data, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %v", f, err)
		}
		regs, found, err := parseSearchRegistries(string(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %v", f, err)
		}
		if found {
			return regs, nil
		}
	}
	return nil, nil
}

// parseSearchRegistries reads the one key ursb needs from a TOML file: a
// top-level array of strings, possibly over several lines.
func parseSearchRegistries(data string) ([]string, bool, error) {
	sc := bufio.NewScanner(strings.NewReader(data))
	var value strings.Builder
	collecting, inTable := false, false
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if collecting {
			value.WriteString(line)
			if strings.Contains(line, "]") {
				break
			}
			continue
		}
		if strings.HasPrefix(line, "[") {
			inTable = true
			continue
		}
		key, v, ok := strings.Cut(line, "=")
		if !ok || inTable || strings.TrimSpace(key) != "unqualified-search-registries" {
			continue
		}
		v = strings.TrimSpace(v)
		value.WriteString(v)
		collecting = !strings.Contains(v, "]")
		if !collecting {
			break
		}
	}
	v := value.String()
	if v == "" {
		return nil, false, nil
	}
	if !strings.HasPrefix(v, "[") || !strings.HasSuffix(v, "]") {
		return nil, false, errors.New("unqualified-search-registries is not an array of strings")
	}
	var regs []string
	for _, item := range strings.Split(strings.Trim(v, "[]"), ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if len(item) < 2 || (item[0] != '"' && item[0] != '\'') || item[len(item)-1] != item[0] {
			return nil, false, errors.New("unqualified-search-registries is not an array of strings")
		}
		regs = append(regs, item[1:len(item)-1])
	}
	return regs, true, nil
}
