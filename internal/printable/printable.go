package printable

import "strings"

// String returns s with each control character (C0, DEL and C1, so
// newlines and escapes too) shown as '?', as ps and ls do, and each byte
// that is not UTF-8 as U+FFFD, so a lone 0x9b cannot act as an 8-bit CSI.
func String(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r >= 0x7f && r < 0xa0 {
			return '?'
		}
		return r
	}, s)
}
