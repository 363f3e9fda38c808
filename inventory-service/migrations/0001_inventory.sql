CREATE TABLE IF NOT EXISTS stock (
    product_id TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    available  INTEGER NOT NULL CHECK (available >= 0)
);

-- One row per order and product reserved; the order's reservation is all or nothing.
CREATE TABLE IF NOT EXISTS reservations (
    order_id    UUID NOT NULL,
    product_id  TEXT NOT NULL REFERENCES stock (product_id),
    quantity    INTEGER NOT NULL CHECK (quantity > 0),
    reserved_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, product_id)
);

-- Events already handled, with the answer sent, so a redelivered event is
-- answered again but never reserves twice.
CREATE TABLE IF NOT EXISTS processed_events (
    event_id     UUID PRIMARY KEY,
    order_id     UUID NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('reserved', 'rejected')),
    reason       TEXT,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

INSERT INTO stock (product_id, name, available) VALUES
    ('prod1', 'Mechanical keyboard', 1000000),
    ('prod2', 'USB-C cable', 1000000),
    ('prod3', 'Limited edition mouse', 0)
ON CONFLICT (product_id) DO NOTHING;
