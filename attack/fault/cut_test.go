package fault

import (
	"context"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/rundir"
)

// slowProxies takes its time disabling a proxy, as toxiproxy does while it
// drops the proxy's connections, by advancing the fake clock.
type slowProxies struct {
	now  *time.Time
	took time.Duration
}

func (p slowProxies) AddToxic(string, string, string, string, float32, map[string]any) error {
	return nil
}
func (p slowProxies) RemoveToxic(string, string) error { return nil }
func (p slowProxies) SetEnabled(string, bool) error {
	*p.now = p.now.Add(p.took)
	return nil
}

// TestCutWindowOpensWhenTheDisablingBegins: the outage's start record
// carries the time the cut began, not the time toxiproxy finished
// dropping connections (requests fail from the first drop on), and its
// stop record the time the proxy was back.
func TestCutWindowOpensWhenTheDisablingBegins(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	now := t0
	rec := &recorder{}
	env := &Env{Proxies: slowProxies{now: &now, took: 300 * time.Millisecond}, Log: rec, Now: func() time.Time { return now }}
	f, _ := New(rundir.FaultOutage)
	if err := f.Start(context.Background(), env, rundir.FaultSpec{Fault: rundir.FaultOutage, Duration: time.Second}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Second)
	if err := f.Stop(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if len(rec.recs) != 2 || rec.recs[0].Action != "start" || rec.recs[0].Target != ProxyPostgres {
		t.Fatalf("records %+v", rec.recs)
	}
	if !rec.recs[0].Time.Equal(t0) {
		t.Errorf("start recorded at %s, want %s (when the disabling began)", rec.recs[0].Time, t0)
	}
	if want := t0.Add(1600 * time.Millisecond); !rec.recs[1].Time.Equal(want) {
		t.Errorf("stop recorded at %s, want %s (when the proxy was back)", rec.recs[1].Time, want)
	}
}
