package fault

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paytest/paytest/attack/history"
	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/toxiembed"
)

type recorder struct {
	mu   sync.Mutex
	recs []history.Fault
}

func (r *recorder) Record(f history.Fault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, f)
}

func (r *recorder) actions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, f := range r.recs {
		out = append(out, f.Fault+":"+f.Action)
	}
	return out
}

func TestEveryContractFaultIsRegistered(t *testing.T) {
	want := []string{BrokerCut, EatResponse, Kill, Latency, Outage, Poison, RedisLoss}
	slices.Sort(want)
	if got := Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	if _, err := New("meteor"); apperr.Code(err) != apperr.EUSAGE || !strings.Contains(err.Error(), "eat-response") {
		t.Fatalf("New(meteor) = %v, want EUSAGE listing the names", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		spec Spec
		ok   bool
	}{
		{Spec{Fault: EatResponse, At: 0.1, Until: 0.5, Toxicity: 0.3}, true},
		{Spec{Fault: "meteor"}, false},
		{Spec{Fault: BrokerCut, At: 1.5}, false},
		{Spec{Fault: BrokerCut, At: 0.5, Until: 0.2}, false},
		{Spec{Fault: EatResponse, Toxicity: 2}, false},
	}
	for _, tt := range tests {
		if err := tt.spec.Validate(); (err == nil) != tt.ok {
			t.Errorf("%+v: err = %v, want ok=%v", tt.spec, err, tt.ok)
		}
	}
}

func TestCrashArgsArmTheCrashPointAtTheFractionOfOps(t *testing.T) {
	comp, args := CrashArgs(Spec{Fault: Kill, Target: "relay", Crash: "after-publish", At: 0.4}, 1000)
	if comp != "relay" || !slices.Equal(args, []string{"--crash-at", "after-publish:400"}) {
		t.Fatalf("CrashArgs = %s %v", comp, args)
	}
	if comp, args := CrashArgs(Spec{Fault: Kill, Target: "relay"}, 1000); comp != "" || args != nil {
		t.Fatalf("plain kill armed %s %v", comp, args)
	}
}

func TestToxicAndCutFaultsActThroughTheRealToxiproxy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tp, err := toxiembed.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tp.Shutdown)
	var handled atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handled.Add(1)
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	up := strings.TrimPrefix(srv.URL, "http://")
	pc, err := tp.CreateProxy(ProxyCharge, up)
	if err != nil {
		t.Fatal(err)
	}
	pn, err := tp.CreateProxy(ProxyNATS, up)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	env := &Env{Proxies: Toxiproxy{Client: tp.Client()}, Log: rec, Ops: 10}
	get := func(listen string) error {
		c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + listen + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		return err
	}

	eat, _ := New(EatResponse)
	if err := eat.Start(ctx, env, Spec{Fault: EatResponse, Toxicity: 1}); err != nil {
		t.Fatal(err)
	}
	before := handled.Load()
	if err := get(pc.Listen); err == nil {
		t.Fatal("eat-response let the response through")
	}
	if handled.Load() != before+1 {
		t.Fatal("eat-response kept the request from the server")
	}
	if err := eat.Stop(ctx, env); err != nil {
		t.Fatal(err)
	}
	if err := get(pc.Listen); err != nil {
		t.Fatalf("after eat-response stopped: %v", err)
	}

	cut, _ := New(BrokerCut)
	if err := cut.Start(ctx, env, Spec{Fault: BrokerCut}); err != nil {
		t.Fatal(err)
	}
	if err := get(pn.Listen); err == nil {
		t.Fatal("broker-cut left the proxy open")
	}
	if err := cut.Stop(ctx, env); err != nil {
		t.Fatal(err)
	}
	if err := cut.Stop(ctx, env); err != nil {
		t.Fatal(err)
	}
	if err := get(pn.Listen); err != nil {
		t.Fatalf("after broker-cut stopped: %v", err)
	}

	want := []string{"eat-response:start", "eat-response:stop", "broker-cut:start", "broker-cut:stop"}
	if got := rec.actions(); !slices.Equal(got, want) {
		t.Fatalf("recorded %v, want %v", got, want)
	}

	k, _ := New(Kill)
	if err := k.Start(ctx, &Env{}, Spec{Fault: Kill, Target: "relay"}); apperr.Code(err) != apperr.EUSAGE {
		t.Fatalf("kill without components: %v, want EUSAGE", err)
	}
}
