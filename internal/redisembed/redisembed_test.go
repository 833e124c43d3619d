package redisembed

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestStartRestartLosesKeys(t *testing.T) {
	ctx := context.Background()
	s, err := Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	opt, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Get(ctx, "k").Err(); err != redis.Nil {
		t.Fatalf("after restart Get = %v, want redis.Nil (an empty server)", err)
	}
	s.Stop()
	s.Stop()
	if rdb.Ping(ctx).Err() == nil {
		t.Fatal("server still answers after Stop")
	}
}
