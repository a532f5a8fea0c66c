//go:build !linux

package e2e

import "syscall"

// procAttr has nothing to add outside Linux (no parent-death signal).
func procAttr() *syscall.SysProcAttr { return nil }
