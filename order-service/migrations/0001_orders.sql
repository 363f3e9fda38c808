CREATE TABLE IF NOT EXISTS orders (
    id              UUID PRIMARY KEY,
    user_id         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'rejected')),
    status_reason   TEXT,
    total_cents     BIGINT NOT NULL CHECK (total_cents >= 0),
    idempotency_key TEXT UNIQUE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS order_items (
    order_id         UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line             INTEGER NOT NULL,
    product_id       TEXT NOT NULL,
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_cents BIGINT NOT NULL CHECK (unit_price_cents >= 0),
    PRIMARY KEY (order_id, line)
);

-- Events written in the order's transaction; published after commit, or by
-- the relay if that fails. trace_context holds the propagation headers of the
-- request that created the event, so a late publish joins the original trace.
CREATE TABLE IF NOT EXISTS outbox (
    id            UUID PRIMARY KEY,
    topic         TEXT NOT NULL,
    message_key   TEXT NOT NULL,
    payload       JSONB NOT NULL,
    trace_context JSONB NOT NULL DEFAULT '{}',
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at  TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (created_at) WHERE published_at IS NULL;

-- inventory-events already applied (at-least-once delivery).
CREATE TABLE IF NOT EXISTS processed_events (
    event_id     UUID PRIMARY KEY,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
