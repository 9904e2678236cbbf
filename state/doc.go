// Package state owns ursb's private directories: the runtime directory
// ($XDG_RUNTIME_DIR/ursb, or a private directory under the user's home when
// that is unset, never a predictable path in /tmp) and the data directory
// ($XDG_DATA_HOME/ursb). Both are 0700 and their owner is checked before use,
// so no other user of a shared host can read or plant anything in them.
package state
