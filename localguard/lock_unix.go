//go:build unix

package localguard

import (
	"errors"
	"os"
	"syscall"
)

// tryLock takes an exclusive lock on a record file, without waiting: false when another
// process holds it. The lock goes with the process, so a crashed agent leaves none.
func tryLock(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}
