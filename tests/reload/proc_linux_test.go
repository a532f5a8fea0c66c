package reload

import "syscall"

// procAttr makes the kernel kill a `latch` process if the test binary dies first (a `go test`
// timeout panics past every clean-up), so nothing outlives the test.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
