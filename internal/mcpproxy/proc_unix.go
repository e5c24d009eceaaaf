//go:build unix

package mcpproxy

import (
	"os/exec"
	"syscall"
)

// ownGroup starts the server in a process group of its own, so that stopping it reaches
// the processes a runner (npx, uvx) started for it.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

func signalGroup(cmd *exec.Cmd, sig syscall.Signal) {
	if err := syscall.Kill(-cmd.Process.Pid, sig); err != nil {
		cmd.Process.Signal(sig)
	}
}
