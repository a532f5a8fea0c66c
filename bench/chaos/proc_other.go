//go:build !linux

package main

import "syscall"

// sysProcAttr has nothing to add outside Linux: there is no parent-death signal.
func sysProcAttr() *syscall.SysProcAttr { return nil }
