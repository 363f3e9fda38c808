-- One database per service; each service migrates its own schema at start-up.
-- \gexec makes this safe to run again by hand (CREATE DATABASE has no IF NOT EXISTS).
SELECT format('CREATE DATABASE %I', name)
FROM unnest(ARRAY['users', 'orders', 'inventory']) AS name
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = name)
\gexec
