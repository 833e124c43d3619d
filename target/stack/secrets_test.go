package stack

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/testinfra"
)

// TestSecretsStayOffCommandLines: no component's command line, which every
// user of the machine can read (ps, /proc/PID/cmdline), holds an API key or
// a database password, before or after a restart; they reach the components
// through the environment, and the charge service accepts the key.
func TestSecretsStayOffCommandLines(t *testing.T) {
	const apiSecret, dbPassword, chargePassword = "sk_test_env_only_7f3a", "pw_env_only_91c2", "pw_charge_only_4d0e"
	db := testinfra.Postgres(t)
	// The test server trusts local connections, so any password is accepted.
	withPassword := func(pw string) string {
		u, err := url.Parse(db)
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(u.User.Username(), pw)
		return u.String()
	}
	s := MustStack(t, Config{DatabaseURL: withPassword(dbPassword), ChargeDatabaseURL: withPassword(chargePassword),
		APIKeys: []string{"acme=" + apiSecret}})
	check := func(name, dbURL string) {
		t.Helper()
		pid := s.Pid(name)
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Contains(cmdline, []byte("serve\x00"+name)) {
			t.Fatalf("pid %d is not the %s: %q", pid, name, cmdline)
		}
		for _, secret := range []string{apiSecret, dbPassword, chargePassword} {
			if bytes.Contains(cmdline, []byte(secret)) {
				t.Errorf("%s's command line holds a secret: %q", name, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
			}
		}
		environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Contains(environ, []byte("\x00PAYTEST_DATABASE_URL="+dbURL+"\x00")) {
			t.Errorf("%s's environment lacks its database URL %s", name, dbURL)
		}
	}
	check(Relay, withPassword(dbPassword))
	check(Consumer, withPassword(dbPassword))
	check(Charge, withPassword(chargePassword))
	first := s.Pid(Charge)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Restart(ctx, Charge); err != nil {
		t.Fatal(err)
	}
	if s.Pid(Charge) == first {
		t.Fatal("the charge service was not restarted")
	}
	check(Charge, withPassword(chargePassword))
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
