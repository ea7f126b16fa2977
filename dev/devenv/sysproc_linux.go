package devenv

import "syscall"

// sysProcAttr runs a child as cred (when set) and kills it when this process
// dies, so a crashed dev run never leaves a PostgreSQL server behind.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
