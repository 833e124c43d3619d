package toxiembed_test

import (
	"context"
	"fmt"
	"net"

	"github.com/paytest/paytest/internal/toxiembed"
)

// Start an embedded toxiproxy, put a proxy in front of a service, and cut
// it for a while through the real API.
func Example() {
	ctx := context.Background()
	srv, err := toxiembed.Start(ctx)
	if err != nil {
		panic(err)
	}
	defer srv.Shutdown()

	upstream, _ := net.Listen("tcp", "127.0.0.1:0")
	defer upstream.Close()

	p, err := srv.CreateProxy("nats", upstream.Addr().String())
	if err != nil {
		panic(err)
	}
	_ = p.Disable()
	_ = p.Enable()
	got, _ := srv.Client().Proxy("nats")
	fmt.Println(got.Name, got.Enabled, got.Listen == p.Listen)
	// Output: nats true true
}
