CREATE TABLE IF NOT EXISTS users (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    email      TEXT NOT NULL,
    tier       TEXT NOT NULL DEFAULT 'standard',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

INSERT INTO users (id, name, email, tier) VALUES
    ('user123', 'Ada Lovelace', 'ada@example.com', 'premium'),
    ('user456', 'Grace Hopper', 'grace@example.com', 'standard'),
    ('user789', 'Alan Turing', 'alan@example.com', 'standard')
ON CONFLICT (id) DO NOTHING;
