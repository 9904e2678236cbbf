// Package beneath creates and replaces files below a directory given by
// descriptor without ever leaving it, for extractors of hostile tar
// streams (a sandbox's copy stream, an image's layer). Every path is
// resolved with openat2's RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS, so no
// symlink, whether the stream made it, it was there before or it was
// swapped in meanwhile, is followed; the last component is handled with
// *at calls that never follow it either.
package beneath
