package browser

import "syscall"

// procAttr makes the kernel kill `latch serve` if the test binary dies first (a `go test`
// timeout panics past the clean-ups), so no orphan keeps the ports and the database.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
