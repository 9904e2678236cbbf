package image

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// AuthFile is where ursb login keeps credentials: podman's auth.json
// ($REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json), so
// that a podman login serves ursb and the other way round.
func AuthFile() (string, error) {
	if f := os.Getenv("REGISTRY_AUTH_FILE"); f != "" {
		return f, nil
	}
	run := os.Getenv("XDG_RUNTIME_DIR")
	if run == "" {
		return "", errors.New("XDG_RUNTIME_DIR is not set, so podman's auth.json has no place; set it or REGISTRY_AUTH_FILE")
	}
	return filepath.Join(run, "containers", "auth.json"), nil
}

// authFiles are read in order for a registry's credentials: podman's,
// then Docker's.
func authFiles() []string {
	var files []string
	if f, err := AuthFile(); err == nil {
		files = append(files, f)
	}
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return append(files, filepath.Join(d, "config.json"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		files = append(files, filepath.Join(home, ".docker", "config.json"))
	}
	return files
}

// authConfig is the shape both podman's auth.json and Docker's
// config.json share; Docker's other keys are kept as they are.
type authConfig struct {
	Auths map[string]authEntry `json:"auths"`
	rest  map[string]json.RawMessage
}

type authEntry struct {
	Auth string `json:"auth,omitempty"`
}

func readAuth(file string) (*authConfig, error) {
	c := &authConfig{Auths: map[string]authEntry{}, rest: map[string]json.RawMessage{}}
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &c.rest); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	if a, ok := c.rest["auths"]; ok {
		if err := json.Unmarshal(a, &c.Auths); err != nil {
			return nil, fmt.Errorf("%s: %v", file, err)
		}
	}
	if c.Auths == nil {
		c.Auths = map[string]authEntry{}
	}
	return c, nil
}

func (c *authConfig) write(file string) error {
	auths, err := json.Marshal(c.Auths)
	if err != nil {
		return err
	}
	c.rest["auths"] = auths
	data, err := json.MarshalIndent(c.rest, "", "\t")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	tmp := file + ".ursb-tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// authKey is how a registry is keyed in the files; Docker Hub has a
// historical key of its own.
func authKeys(registry string) []string {
	if registry == name.DefaultRegistry || registry == "docker.io" {
		return []string{"docker.io", "index.docker.io", authn.DefaultAuthKey}
	}
	return []string{registry, "https://" + registry, "http://" + registry}
}

// Keychain finds credentials in podman's auth.json, then in Docker's
// config.json; a registry in neither is used anonymously.
var Keychain authn.Keychain = keychain{}

type keychain struct{}

func (keychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	for _, f := range authFiles() {
		c, err := readAuth(f)
		if err != nil {
			return nil, err
		}
		for _, k := range authKeys(r.RegistryStr()) {
			if e, ok := c.Auths[k]; ok && e.Auth != "" {
				raw, err := base64.StdEncoding.DecodeString(e.Auth)
				user, pass, ok := strings.Cut(string(raw), ":")
				if err != nil || !ok {
					return nil, fmt.Errorf("%s: the credentials of %s are not base64 of user:password", f, k)
				}
				return &authn.Basic{Username: user, Password: pass}, nil
			}
		}
	}
	return authn.Anonymous, nil
}

// Login checks user and password against registry's /v2/ endpoint and
// stores them in auth.json. insecure allows plain HTTP and unverified TLS.
func Login(ctx context.Context, registry, user, password string, insecure bool) error {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(registry, opts...)
	if err != nil {
		return fmt.Errorf("%q is not a registry: %v", registry, err)
	}
	base := remote.DefaultTransport
	if insecure {
		base = insecureTransport()
	}
	auth := &authn.Basic{Username: user, Password: password}
	rt, err := transport.NewWithContext(ctx, reg, auth, base, []string{reg.Scope(transport.PullScope)})
	if err != nil {
		return fmt.Errorf("logging in to %s: %v", registry, registryError(err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, reg.Scheme()+"://"+reg.RegistryStr()+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return fmt.Errorf("logging in to %s: %v", registry, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("logging in to %s: the registry answered %s; check the user name and password", registry, resp.Status)
	}
	file, err := AuthFile()
	if err != nil {
		return err
	}
	c, err := readAuth(file)
	if err != nil {
		return err
	}
	c.Auths[authKeys(reg.RegistryStr())[0]] = authEntry{Auth: base64.StdEncoding.EncodeToString([]byte(user + ":" + password))}
	return c.write(file)
}

// Logout removes registry's credentials from auth.json; all of them when
// registry is empty.
func Logout(registry string) error {
	file, err := AuthFile()
	if err != nil {
		return err
	}
	c, err := readAuth(file)
	if err != nil {
		return err
	}
	found := false
	for k := range c.Auths {
		if registry == "" || slices.Contains(authKeys(registry), k) {
			delete(c.Auths, k)
			found = true
		}
	}
	if !found {
		return fmt.Errorf("not logged in to %s", registry)
	}
	return c.write(file)
}
