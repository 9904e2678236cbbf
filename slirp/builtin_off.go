//go:build ursb_nobuiltin

package slirp

import "errors"

const builtinAvailable = false

func startBuiltin(int, Options) (driver, error) {
	return nil, errors.New("this ursb was built without the builtin network (tag ursb_nobuiltin): use --net pasta or slirp4netns")
}
