//go:build !linux

package browser

import "syscall"

// procAttr has nothing to add outside Linux: there is no parent-death signal.
func procAttr() *syscall.SysProcAttr { return nil }
