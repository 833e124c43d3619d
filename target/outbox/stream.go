package outbox

import (
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamConfig is the JetStream stream that carries charge.created events on
// subject. The relay and the consumer both create-or-update the stream with
// exactly this configuration, so either may start first and neither undoes
// the other: file storage, one subject, the server's default duplicates
// window (what Nats-Msg-Id dedup works within).
func StreamConfig(name, subject string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:     name,
		Subjects: []string{subject},
		Storage:  jetstream.FileStorage,
	}
}

// Connect opens the broker connection the relay and the consumer share the
// policy of: never give up (retry the first connect too, reconnect forever,
// every 250 ms), and log disconnects and reconnects. extra adds options.
func Connect(url, name string, log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	opts := append([]nats.Option{
		nats.Name(name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}, extra...)
	return nats.Connect(url, opts...)
}
