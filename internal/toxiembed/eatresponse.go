package toxiembed

import (
	"math/rand/v2"

	"github.com/Shopify/toxiproxy/v2/toxics"
)

// EatResponseType is the toxic type name of EatResponse, registered with
// the toxiproxy library of this process (the embedded server's).
const EatResponseType = "eat_response"

// EatResponse is a downstream toxic that eats each chunk the upstream sends
// (an HTTP/1.1 server sends a small response in one) with probability
// Probability: the chunk is dropped and the connection closed, as a
// limit_data of 0 bytes does, after the server has handled the request.
//
// toxiproxy draws a toxic's toxicity once per connection, so a limit_data
// with toxicity p eats p of the responses only if every request opens its
// own connection, and a client that keeps connections alive sees the
// afflicted ones die at once and the rest never eat anything. EatResponse
// draws per response on every connection (add it with toxicity 1): keep-
// alive connections are reused, and only an eaten response costs a new one.
type EatResponse struct {
	Probability float64 `json:"probability"`
}

// Pipe forwards or eats each chunk until the toxic is removed (Interrupt:
// the connection goes on untouched) or the connection ends.
func (t *EatResponse) Pipe(stub *toxics.ToxicStub) {
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil || rand.Float64() < t.Probability {
				stub.Close()
				return
			}
			stub.Output <- c
		}
	}
}

func init() {
	toxics.Register(EatResponseType, new(EatResponse))
}
