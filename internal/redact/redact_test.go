package redact

import (
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://app:s3cret@db:5432/pay?sslmode=disable", "postgres://app:xxxxx@db:5432/pay?sslmode=disable"},
		{"postgres://app@db/pay?sslmode=require&password=s3cret", "postgres://app@db/pay?sslmode=require&password=xxxxx"},
		{"postgres://db/pay?sslpassword=s3cret&sslmode=verify-full", "postgres://db/pay?sslpassword=xxxxx&sslmode=verify-full"},
		{"https://shop.test/metrics?access_token=s3cret&job=pay", "https://shop.test/metrics?access_token=xxxxx&job=pay"},
		{"https://shop.test/metrics?api_key=s3cret", "https://shop.test/metrics?api_key=xxxxx"},
		{"https://shop.test/metrics?PASSWORD=s3cret", "https://shop.test/metrics?PASSWORD=xxxxx"},
		{"redis://:s3cret@127.0.0.1:6379/0", "redis://:xxxxx@127.0.0.1:6379/0"},
		{"nats://user:s3cret@127.0.0.1:4222", "nats://user:xxxxx@127.0.0.1:4222"},
		// What is no secret stays byte for byte.
		{"http://127.0.0.1:9102/metrics?job=a%20b&keyboard=1", "http://127.0.0.1:9102/metrics?job=a%20b&keyboard=1"},
		{"http://user@host/x", "http://user@host/x"},
		// Not a URL: redacted as text.
		{"host=db user=app password=s3cret dbname=pay", "host=db user=app password=xxxxx dbname=pay"},
		{"host=db password='s3 cret' dbname=pay", "host=db password=xxxxx dbname=pay"},
	}
	for _, tt := range tests {
		if got := URL(tt.in); got != tt.want {
			t.Errorf("URL(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if strings.Contains(URL(tt.in), "s3") {
			t.Errorf("URL(%q) keeps the secret", tt.in)
		}
	}
}

func TestString(t *testing.T) {
	tests := []struct{ in, want string }{
		{`Get "http://h/metrics?token=s3cret": dial tcp: refused`, `Get "http://h/metrics?token=xxxxx": dial tcp: refused`},
		{"--database-url=postgres://u:s3cret@h/db", "--database-url=postgres://u:xxxxx@h/db"},
		{"--api-key=s3cret --listen=127.0.0.1:0", "--api-key=xxxxx --listen=127.0.0.1:0"},
		{"Authorization: Bearer s3cret", "Authorization: xxxxx"},
		{"curl -H 'Authorization: Bearer s3cret' http://h/kill", "curl -H 'Authorization: xxxxx' http://h/kill"},
		{"sent with bearer s3cret.x-y", "sent with bearer xxxxx"},
		{"target http://127.0.0.1:8080/charge via proxy 127.0.0.1:1234", "target http://127.0.0.1:8080/charge via proxy 127.0.0.1:1234"},
		{"op 3 sender 1 key 0b5d-4 attempt 2: 200 new", "op 3 sender 1 key 0b5d-4 attempt 2: 200 new"},
		{"--key-header=Idempotency-Key", "--key-header=Idempotency-Key"},
	}
	for _, tt := range tests {
		if got := String(tt.in); got != tt.want {
			t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSecretName(t *testing.T) {
	for name, want := range map[string]bool{
		"password": true, "sslpassword": true, "token": true, "access_token": true, "client_secret": true,
		"api-key": true, "--api-key": true, "X-Api-Key": true, "Authorization": true, "sig": true, "X-Amz-Signature": true,
		"sslmode": false, "job": false, "key-header": false, "keyboard": false, "user": false, "ops": false,
	} {
		if got := SecretName(name); got != want {
			t.Errorf("SecretName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestHeader(t *testing.T) {
	if got := Header("X-Custom: Bearer s3cret"); got != "X-Custom: xxxxx" {
		t.Fatalf("Header = %q", got)
	}
}
