package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/paytest/paytest/attack"
	"github.com/paytest/paytest/attack/load"
	"github.com/paytest/paytest/profiles"

	"github.com/paytest/paytest/internal/apperr"
)

// resolve parses args for `paytest attack` and returns the resolved config
// without running the attack.
func resolve(t *testing.T, args ...string) (opsConc [2]int, dup float64, profile string, err error) {
	t.Helper()
	cfg, _, err := resolveCfg(t, args...)
	if err != nil {
		return opsConc, 0, "", err
	}
	return [2]int{cfg.Plan.Ops, cfg.Plan.Concurrency}, cfg.Plan.DuplicateRate, cfg.Profile.Name, nil
}

func TestAttackConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "paytest.yaml")
	if err := os.WriteFile(conf, []byte("ops: 300\nconcurrency: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The race profile says ops 500, concurrency 32, duplicate-rate 0.5;
	// the built-in defaults are 1000, 32, 0.2.
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		ops     int
		conc    int
		dup     float64
		profile string
	}{
		{"built-in default", nil, nil, 1000, 32, 0.2, "default"},
		{"profile over default", []string{"--profile", "race"}, nil, 500, 32, 0.5, "race"},
		{"config over profile", []string{"--profile", "race", "--config", conf}, nil, 300, 3, 0.5, "race"},
		{"env over config", []string{"--profile", "race", "--config", conf}, map[string]string{"PAYTEST_OPS": "200"}, 200, 3, 0.5, "race"},
		{"flag over env", []string{"--profile", "race", "--config", conf, "--ops", "100"}, map[string]string{"PAYTEST_OPS": "200"}, 100, 3, 0.5, "race"},
		{"profile chosen by env", nil, map[string]string{"PAYTEST_PROFILE": "key-reuse"}, 500, 16, 0.1, "key-reuse"},
		// Unasked, a --target run gets the faults that act on an endpoint.
		{"target default", []string{"--target", "http://127.0.0.1:9/pay"}, nil, 1000, 32, 0.2, "endpoint"},
		{"target with a profile", []string{"--target", "http://127.0.0.1:9/pay", "--profile", "race"}, nil, 500, 32, 0.5, "race"},
		{"target with a profile by env", []string{"--target", "http://127.0.0.1:9/pay"}, map[string]string{"PAYTEST_PROFILE": "default"}, 1000, 32, 0.2, "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"PAYTEST_OPS", "PAYTEST_PROFILE"} {
				t.Setenv(k, tt.env[k])
				if tt.env[k] == "" {
					os.Unsetenv(k)
				}
			}
			oc, dup, prof, err := resolve(t, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if oc[0] != tt.ops || oc[1] != tt.conc || dup != tt.dup || prof != tt.profile {
				t.Fatalf("ops %d concurrency %d duplicate-rate %v profile %s; want %d %d %v %s",
					oc[0], oc[1], dup, prof, tt.ops, tt.conc, tt.dup, tt.profile)
			}
		})
	}
}

func TestAttackUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--profile", "meteor"}, "relay-crash"},
		{[]string{"--header", "nocolon"}, "--header"},
		{[]string{"--metrics-url", "http://x/metrics"}, "only with --target"},
		{[]string{"--body-template", "/no/such/file"}, "--body-template"},
		{[]string{"--unsafe", "no-brakes"}, "no-idempotency"},
		{[]string{"--ops", "-1"}, "--ops -1: want 1 to"},
		{[]string{"--ca-cert", "/no/such.pem"}, "only with --target"},
		{[]string{"--target", "https://x.test/", "--metrics-url", "https://x.test/m", "--ca-cert", "/no/such.pem"}, "--ca-cert"},
		{[]string{"--kill-at", "1.5"}, `--kill-at "1.5": not within 0..1`},
		{[]string{"--kill-at", "0.3,half"}, `--kill-at "half": invalid syntax`},
		{[]string{"--target", "https://x.test/", "--metrics-url", "https://x.test/m", "--reuse-status", "200"}, `--reuse-status "200": not a 4xx or 5xx status`},
		{[]string{"--target", "https://x.test/", "--metrics-url", "https://x.test/m", "--reuse-status", "4xx"}, `--reuse-status "4xx"`},
		{[]string{"--replay-header", "X-Replayed"}, "--replay-header describes your endpoint: it applies only with --target"},
		{[]string{"--reuse-status", "400"}, "--reuse-status describes your endpoint"},
		{[]string{"--id-field", "/data/id"}, "--id-field describes your endpoint"},
	}
	for _, tt := range tests {
		_, _, _, err := resolve(t, tt.args...)
		if apperr.Code(err) != apperr.EUSAGE || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want EUSAGE mentioning %q", tt.args, err, tt.want)
		}
		if exitCode(err) != exitUsage {
			t.Errorf("%v: exit %d, want %d", tt.args, exitCode(err), exitUsage)
		}
	}
}

func TestProfilesCommand(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"profiles"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"default: 1000 ops", "eat-response", "broker-cut", "kill relay at its after-publish crash point", "race:", "key-reuse:", "lost-response:", "relay-crash:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("paytest profiles lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := run(t.Context(), []string{"profiles", "--output", "json"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var list []struct {
		Name    string   `json:"name"`
		Ops     int      `json:"ops"`
		Injects []string `json:"injects"`
	}
	if err := json.Unmarshal(out.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != len(profiles.Names()) {
		t.Fatalf("json lists %d profiles, want %d: %+v", len(list), len(profiles.Names()), list)
	}
	found := false
	for _, p := range list {
		if p.Name == "default" {
			found = true
			if p.Ops != 1000 || len(p.Injects) == 0 {
				t.Fatalf("json: default profile %+v", p)
			}
		}
	}
	if !found {
		t.Fatalf("json lists no default profile: %+v", list)
	}
	err := run(t.Context(), []string{"profiles", "--output", "xml"}, &out, &bytes.Buffer{})
	if exitCode(err) != exitUsage {
		t.Fatalf("--output xml: %v", err)
	}
}

// TestAttackEndpointFlags: --kill-at, --reuse-status and --skip-fault take
// comma lists and repeats (and a comma list from the environment), and
// --replay-header and --id-field reach the attack's configuration.
func TestAttackEndpointFlags(t *testing.T) {
	tgt := []string{"--target", "https://x.test/pay", "--metrics-url", "https://x.test/metrics"}
	tests := []struct {
		args    []string
		env     string // PAYTEST_KILL_AT
		killAt  []float64
		reuse   []int
		skip    []string
		replay  string
		idField string
	}{
		{tgt, "", nil, []int{422}, nil, "", "/id"},
		{append(slices.Clone(tgt), "--kill-at", "0.3,0.7", "--kill-at", "0.9", "--reuse-status", "400,422", "--reuse-status", "417",
			"--skip-fault", "broker-cut,kill", "--replay-header", "X-Cache=HIT", "--id-field", "/data/charge_id"),
			"", []float64{0.3, 0.7, 0.9}, []int{400, 422, 417}, []string{"broker-cut", "kill"}, "X-Cache=HIT", "/data/charge_id"},
		{tgt, "0.25,0.75", []float64{0.25, 0.75}, []int{422}, nil, "", "/id"},
	}
	for _, tt := range tests {
		t.Setenv("PAYTEST_KILL_AT", tt.env)
		if tt.env == "" {
			os.Unsetenv("PAYTEST_KILL_AT")
		}
		root := newRootCmd(&bytes.Buffer{}, &bytes.Buffer{})
		cmd, rest, err := root.Find(append([]string{"attack"}, tt.args...))
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := attackConfig(cmd)
		if err != nil {
			t.Fatalf("%v: %v", tt.args, err)
		}
		if !slices.Equal(cfg.Faults.KillAt, tt.killAt) || !slices.Equal(cfg.Client.ReuseStatuses, tt.reuse) || !slices.Equal(cfg.Faults.Skip, tt.skip) ||
			cfg.Client.ReplayHeader != tt.replay || cfg.Client.IDField != tt.idField {
			t.Errorf("%v (env %q): kill-at %v reuse %v skip %v replay %q id %q", tt.args, tt.env, cfg.Faults.KillAt, cfg.Client.ReuseStatuses, cfg.Faults.Skip, cfg.Client.ReplayHeader, cfg.Client.IDField)
		}
	}
}

// resolveCfg parses args for `paytest attack` and returns the whole
// resolved configuration.
func resolveCfg(t *testing.T, args ...string) (attack.Config, reportOutput, error) {
	t.Helper()
	root := newRootCmd(&bytes.Buffer{}, &bytes.Buffer{})
	cmd, rest, ferr := root.Find(append([]string{"attack"}, args...))
	if ferr != nil {
		t.Fatal(ferr)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatal(err)
	}
	return attackConfig(cmd)
}

func TestOpenModelFlags(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		ops      int
		rate     load.Rate
		inflight int
		ths      []string
	}{
		{"closed pool without a rate", []string{"--profile", "race"}, nil, 500, load.Rate{}, 0, nil},
		{"rate alone keeps the ops", []string{"--profile", "race", "--rate", "500"}, nil, 500, load.Rate{From: 500, To: 500}, 0, nil},
		{"rate x duration sizes the run", []string{"--profile", "race", "--rate", "500", "--duration", "4s"}, nil, 2000, load.Rate{From: 500, To: 500}, 0, nil},
		{"a ramp's average rate", []string{"--profile", "race", "--rate", "100:300", "--duration", "10s"}, nil, 2000, load.Rate{From: 100, To: 300}, 0, nil},
		{"--ops wins over duration", []string{"--profile", "race", "--rate", "500", "--duration", "4s", "--ops", "300"}, nil, 300, load.Rate{From: 500, To: 500}, 0, nil},
		{"PAYTEST_OPS wins over duration", []string{"--profile", "race", "--rate", "500", "--duration", "4s"}, map[string]string{"PAYTEST_OPS": "250"}, 250, load.Rate{From: 500, To: 500}, 0, nil},
		{"rate from the environment", []string{"--profile", "race", "--max-inflight", "64"}, map[string]string{"PAYTEST_RATE": "50:60"}, 500, load.Rate{From: 50, To: 60}, 64, nil},
		{"the default profile's open model", []string{"--profile", "default"}, nil, 1000, load.Rate{From: 2000, To: 2000}, 256, nil},
		{"--rate '' asks for the closed pool over the profile's open model", []string{"--profile", "default", "--rate", ""}, nil, 1000, load.Rate{}, 0, nil},
		{"thresholds repeat", []string{"--profile", "race", "--threshold", "op_p99 < 800ms", "--threshold", "confirmed_rate>990"}, nil, 500, load.Rate{}, 0, []string{"op_p99 < 800ms", "confirmed_rate > 990"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg, _, err := resolveCfg(t, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			var ths []string
			for _, th := range cfg.Evidence.Thresholds {
				ths = append(ths, th.Expr)
			}
			if cfg.Plan.Ops != tt.ops || cfg.Plan.Rate != tt.rate || cfg.Plan.MaxInflight != tt.inflight || !slices.Equal(ths, tt.ths) {
				t.Fatalf("ops %d rate %v max-inflight %d thresholds %q; want %d %v %d %q", cfg.Plan.Ops, cfg.Plan.Rate, cfg.Plan.MaxInflight, ths, tt.ops, tt.rate, tt.inflight, tt.ths)
			}
		})
	}
}

func TestOpenModelFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--rate", "0"}, "--rate"},
		{[]string{"--rate", "fast"}, "--rate"},
		{[]string{"--rate", "100:"}, "ramp's end"},
		{[]string{"--profile", "race", "--duration", "5s"}, "give --rate too"},
		{[]string{"--profile", "race", "--max-inflight", "10"}, "give --rate too"},
		{[]string{"--rate", "10", "--max-inflight", "-1"}, "must not be negative"},
		{[]string{"--rate", "1000", "--duration", "1h"}, "--rate 1000 for --duration 1h0m0s is 3600000 ops: want at most 1000000"}, // 3,600,000 ops: over the plan's limit
		{[]string{"--threshold", "op_p99 800ms"}, "no comparison"},
		{[]string{"--threshold", "p99 < 1s"}, "unknown metric"},
		{[]string{"--junit", "/no/such/dir/report.xml"}, "--junit"},
		{[]string{"--metrics-listen", "9464"}, "--metrics-listen"},
	}
	for _, tt := range tests {
		_, _, err := resolveCfg(t, tt.args...)
		if apperr.Code(err) != apperr.EUSAGE || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v; want a usage error mentioning %q", tt.args, err, tt.want)
		}
	}
}
