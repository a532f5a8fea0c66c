package latchtest

import "syscall"

// sysProcAttr makes the kernel kill a `latch` process if the test binary dies first (a `go test`
// timeout panics past every clean-up), so no orphan keeps the ports and the database.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
