package outbox

import "github.com/nats-io/nats.go/jetstream"

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
