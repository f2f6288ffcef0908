package e2e

import "syscall"

// procAttr makes the kernel kill the server if the test process dies first
// (say, at go test's -timeout), so no server outlives a crashed run.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
