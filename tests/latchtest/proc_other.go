//go:build !linux

package latchtest

import "syscall"

// sysProcAttr has nothing to add outside Linux: there is no parent-death signal.
func sysProcAttr() *syscall.SysProcAttr { return nil }
