package sandbox

// ExitError is a failure that ends ursb with Code, after Msg (if any) is
// printed on one line.
type ExitError struct {
	Code int
	Msg  string
}

func (e *ExitError) Error() string { return e.Msg }
