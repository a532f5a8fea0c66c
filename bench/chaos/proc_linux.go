package main

import "syscall"

// sysProcAttr makes the kernel kill a `latch` child if the chaos command dies first (Ctrl-C
// past the clean-up, a `go test` timeout), so no orphan keeps the ports.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
