package charge

// Migrations create the charge service's tables. They are applied by New
// through internal/pgmigrate (component "charge"), with outbox.Migrations.
//
// idempotency_keys holds one row per (merchant, key): the request's
// fingerprint, its state (started, then finished), the lock lease of the
// request working on it (locked_until, lock_token) and, once finished, the
// stored response. charges holds the money: idempotency_key is deliberately
// not unique, so that the unsafe modes can be seen double-charging.
var Migrations = []string{`
CREATE TABLE IF NOT EXISTS idempotency_keys (
	id               bigserial PRIMARY KEY,
	merchant         text NOT NULL,
	key              text NOT NULL,
	fingerprint      bytea NOT NULL,
	request          jsonb NOT NULL,
	state            text NOT NULL DEFAULT 'started' CHECK (state IN ('started', 'finished')),
	lock_token       uuid,
	locked_until     timestamptz,
	attempts         int NOT NULL DEFAULT 1,
	charge_id        text,
	response_status  int,
	response_headers jsonb,
	response_body    bytea,
	created_at       timestamptz NOT NULL DEFAULT now(),
	updated_at       timestamptz NOT NULL DEFAULT now(),
	finished_at      timestamptz,
	UNIQUE (merchant, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_created_at ON idempotency_keys (created_at);
CREATE TABLE IF NOT EXISTS charges (
	id              text PRIMARY KEY,
	merchant        text NOT NULL,
	idempotency_key text NOT NULL,
	amount          bigint NOT NULL CHECK (amount > 0),
	currency        text NOT NULL,
	customer        text NOT NULL,
	sku             text NOT NULL,
	quantity        int NOT NULL CHECK (quantity > 0),
	created_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS charges_merchant_key ON charges (merchant, idempotency_key);
`}
