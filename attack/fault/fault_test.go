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

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/rundir"
	"github.com/paytest/paytest/internal/toxiembed"
)

type recorder struct {
	mu   sync.Mutex
	recs []rundir.Fault
}

func (r *recorder) Record(f rundir.Fault) {
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

// Every kind the run directory's vocabulary names has an implementation,
// and no implementation is of a kind profiles cannot name.
func TestEveryFaultKindIsRegistered(t *testing.T) {
	if got, want := Names(), rundir.FaultKinds(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	if _, err := New("meteor"); apperr.Code(err) != apperr.EUSAGE || !strings.Contains(err.Error(), "eat-response") {
		t.Fatalf("New(meteor) = %v, want EUSAGE listing the names", err)
	}
}

func TestCrashArgsArmTheCrashPointAtTheFractionOfOps(t *testing.T) {
	comp, args := CrashArgs(rundir.FaultSpec{Fault: rundir.FaultKill, Target: "relay", Crash: "after-publish", At: 0.4}, 1000)
	if comp != "relay" || !slices.Equal(args, []string{"--crash-at", "after-publish:400"}) {
		t.Fatalf("CrashArgs = %s %v", comp, args)
	}
	if comp, args := CrashArgs(rundir.FaultSpec{Fault: rundir.FaultKill, Target: "relay"}, 1000); comp != "" || args != nil {
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

	eat, _ := New(rundir.FaultEatResponse)
	if err := eat.Start(ctx, env, rundir.FaultSpec{Fault: rundir.FaultEatResponse, Toxicity: 1}); err != nil {
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

	cut, _ := New(rundir.FaultBrokerCut)
	if err := cut.Start(ctx, env, rundir.FaultSpec{Fault: rundir.FaultBrokerCut}); err != nil {
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

	k, _ := New(rundir.FaultKill)
	if err := k.Start(ctx, &Env{}, rundir.FaultSpec{Fault: rundir.FaultKill, Target: "relay"}); apperr.Code(err) != apperr.EUSAGE {
		t.Fatalf("kill without components: %v, want EUSAGE", err)
	}
}
