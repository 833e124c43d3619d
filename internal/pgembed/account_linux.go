package pgembed

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"github.com/paytest/paytest/internal/apperr"
)

// account is whom initdb and postgres run as: this process's user, or,
// when it is root, the "postgres" system user, because initdb refuses to
// run as root.
type account struct {
	cred     *syscall.Credential // nil: this process's user
	uid, gid int
}

// serverAccount returns the account to run PostgreSQL under: this
// process's user when not root, the "postgres" system user when root.
func serverAccount() (account, error) {
	if os.Geteuid() != 0 {
		return thisUser(), nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return account{}, &apperr.Error{Code: apperr.EINCONCLUSIVE,
			Message: "running as root, and PostgreSQL refuses root: create a 'postgres' system user (Debian's postgresql package does) or pass --database-url",
			Err:     err}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return account{cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid: uid, gid: gid}, nil
}

// own hands the cluster directory to the account, when it is not this
// process's user.
func (a account) own(dir string) error {
	if a.cred == nil {
		return nil
	}
	if err := os.Chown(dir, a.uid, a.gid); err != nil {
		return fmt.Errorf("pgembed: chown %s: %w", dir, err)
	}
	return nil
}

// thisUser is this process's own account.
func thisUser() account { return account{uid: -1, gid: -1} }

// chown hands one file of the cluster to the account, when it is not this
// process's user (Lchown: a symlink itself, not what it points at).
func (a account) chown(path string) error {
	if a.cred == nil {
		return nil
	}
	return os.Lchown(path, a.uid, a.gid)
}

// initdbAttr runs initdb as the account.
func (a account) initdbAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: a.cred}
}

// serverAttr runs postgres as the account. Pdeathsig: if paytest dies,
// postgres goes down with it (SIGQUIT is an immediate shutdown). Setpgid
// keeps a terminal's Ctrl-C for paytest to handle, so shutdown happens in
// order.
func (a account) serverAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: a.cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
}
