// Package printable makes text that a sandbox chose safe to print on the
// caller's terminal: a file name or command line with an escape sequence
// in it could otherwise move the cursor, rewrite what the user sees, or
// make the terminal answer a query with text that reaches the user's shell
// as if typed.
package printable
