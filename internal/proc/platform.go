package proc

import "github.com/paytest/paytest/internal/apperr"

// CheckOS says whether paytest can run the bundled reference system on the
// operating system goos (runtime.GOOS): its components are child processes
// in process groups of their own, stopped with SIGTERM and crashed with
// SIGKILL, which Windows has no equivalent of. On such a system only
// --target works, and the error, a usage error, says so.
func CheckOS(goos string) error {
	switch goos {
	case "windows", "plan9", "js", "wasip1":
		return apperr.Errorf(apperr.EUSAGE, "%s", BundledNeedsUnix)
	}
	return nil
}

// BundledNeedsUnix is CheckOS's message.
const BundledNeedsUnix = "the bundled reference system needs Linux or macOS; use --target URL"
