module github.com/ursb/ursb

go 1.26.8

require (
	github.com/alecthomas/kong v1.17.0
	github.com/cyphar/filepath-securejoin v0.7.0
	github.com/docker/go-units v0.5.0
	github.com/godbus/dbus/v5 v5.2.4
	github.com/moby/sys/capability v0.5.0
	github.com/moby/sys/mountinfo v0.7.3
	go.podman.io/storage v1.65.0
	golang.org/x/sys v0.49.0
	golang.org/x/term v0.47.0
)

require (
	cyphar.com/go-pathrs v0.2.5 // indirect
	github.com/moby/sys/user v0.4.1 // indirect
	github.com/sirupsen/logrus v1.10.2 // indirect
)
