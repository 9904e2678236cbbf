package e2e

import (
	"crypto/rand"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// benchRegistryEnv makes the test binary a registry for scripts/bench.sh:
// ADDR[,READY-FILE]. It serves on ADDR, pushes a runnable image of about
// 100 MB in six layers to itself as ADDR/bench/big:1, writes READY-FILE
// and serves until killed.
const benchRegistryEnv = "URSB_E2E_BENCH_REGISTRY"

func benchRegistry(arg string) error {
	addr, ready, _ := strings.Cut(arg, ",")
	// The helpers below stop a test on failure, which a bare testing.T
	// cannot: what they need is checked first.
	if _, err := exec.LookPath("busybox"); err != nil {
		return fmt.Errorf("busybox is not installed: %v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	go func() { _ = srv.Serve(ln) }()
	t := &testing.T{}
	// The layers: busybox, then five of 20 MB each that do not compress
	// (a toolchain's binaries come close), as gzip and zstd.
	layers := []v1.Layer{busyboxLayer(t)}
	for i := range 5 {
		data := make([]byte, 20<<20)
		if _, err := rand.Read(data); err != nil {
			return err
		}
		comp := compression.GZip
		if i%2 == 1 {
			comp = compression.ZStd
		}
		layers = append(layers, layerOf(t, comp, regFile(fmt.Sprintf("data/%d", i), string(data))))
	}
	if t.Failed() {
		return fmt.Errorf("building the bench image failed")
	}
	img := imageOf(t, hostPlatform(), v1.Config{Cmd: []string{"true"}, Env: []string{"PATH=/bin"}}, layers...)
	ref, err := name.ParseReference(ln.Addr().String() + "/bench/big:1")
	if err != nil {
		return err
	}
	if err := remote.Write(ref, img); err != nil {
		return err
	}
	if ready != "" {
		if err := os.WriteFile(filepath.Clean(ready), []byte(ref.String()+"\n"), 0o600); err != nil {
			return err
		}
	}
	select {}
}
