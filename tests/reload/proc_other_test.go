//go:build !linux

package reload

import "syscall"

// procAttr has nothing to add outside Linux (no parent-death signal).
func procAttr() *syscall.SysProcAttr { return nil }
