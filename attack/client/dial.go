package client

import (
	"context"
	"net"
)

// maxDialing bounds the connections the default transport opens at once.
// When a target stalls, every open op waiting on it holds its connection
// and each new arrival dials another: thousands of connects at once
// overflow the target's listen backlog, the kernel drops their SYNs and
// retries them a second later, and the sender spends its CPU on connects
// instead of sends, so it falls behind for good after the target is back.
// Bounded, an op waiting to dial takes the first connection an answered
// op frees, and its wait counts in its latency like any other.
const maxDialing = 128

// dialFunc is http.Transport's DialContext.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// limitDials returns dial with at most n calls in progress at once; a call
// over the limit waits for a slot or for its context to end.
func limitDials(dial dialFunc, n int) dialFunc {
	slots := make(chan struct{}, n)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		defer func() { <-slots }()
		return dial(ctx, network, addr)
	}
}
