//go:build !linux

package pgembed

import (
	"syscall"

	"github.com/paytest/paytest/internal/proc"
)

// account is whom initdb and postgres run as: here always this process's
// user (initdb refuses root; on macOS nobody runs paytest as root).
type account struct{}

// serverAccount returns this process's user.
func serverAccount() (account, error) { return account{}, nil }

// own does nothing: the directory is already this user's.
func (account) own(string) error { return nil }

// thisUser is this process's own account.
func thisUser() account { return account{} }

// chown does nothing: the cluster is this user's.
func (account) chown(string) error { return nil }

// initdbAttr runs initdb as this user.
func (account) initdbAttr() *syscall.SysProcAttr { return nil }

// serverAttr is a child's usual attributes (its own process group): with
// no Pdeathsig here, a postgres whose paytest was killed outright lives on.
func (account) serverAttr() *syscall.SysProcAttr { return proc.SysProcAttr() }
