package stack

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/paytest/paytest/internal/testinfra"
)

// TestSecretsStayOffCommandLines: no component's command line, which every
// user of the machine can read (ps, /proc/PID/cmdline), holds an API key or
// the database password; they reach the components through the environment,
// and the charge service accepts the key.
func TestSecretsStayOffCommandLines(t *testing.T) {
	const apiSecret, dbPassword = "sk_test_env_only_7f3a", "pw_env_only_91c2"
	u, err := url.Parse(testinfra.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	// The test server trusts local connections, so any password is accepted.
	u.User = url.UserPassword(u.User.Username(), dbPassword)
	s := MustStack(t, Config{DatabaseURL: u.String(), APIKeys: []string{"acme=" + apiSecret}})
	for _, name := range []string{Charge, Relay, Consumer} {
		pid := s.Pid(name)
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Contains(cmdline, []byte("serve\x00"+name)) {
			t.Fatalf("pid %d is not the %s: %q", pid, name, cmdline)
		}
		for _, secret := range []string{apiSecret, dbPassword} {
			if bytes.Contains(cmdline, []byte(secret)) {
				t.Errorf("%s's command line holds a secret: %q", name, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
			}
		}
		environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Contains(environ, []byte("PAYTEST_DATABASE_URL="+u.String()+"\x00")) {
			t.Errorf("%s's environment lacks its database URL", name)
		}
	}
	req, err := http.NewRequest(http.MethodPost, s.ChargeURL(), strings.NewReader(
		`{"amount":1299,"currency":"EUR","customer":"cus_1","sku":"sku-1","quantity":1}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiSecret)
	req.Header.Set("Idempotency-Key", "env-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a charge with the key from the environment: %s", resp.Status)
	}
}
