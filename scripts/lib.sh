# Shared by scripts/run.sh and scripts/test.sh.

say() { printf '==> %s\n' "$*"; }

pg_answers() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }

# Postgres on 127.0.0.1:5432: use the one that answers; else start an
# installed one; else install it from Debian's packages.
ensure_postgres() {
  if pg_answers; then
    say "Postgres answers on 127.0.0.1:5432"
  else
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
      say "installing PostgreSQL from Debian packages"
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    version=$(ls /etc/postgresql | sort -V | tail -n1)
    say "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    # Trust auth on loopback for the tests' postgres user.
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    if ! grep -q "^host all all 127.0.0.1/32 trust" "$hba"; then
      sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
      pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    fi
    for _ in $(seq 1 30); do pg_answers && break; sleep 1; done
    pg_answers || { echo "Postgres did not start" >&2; exit 1; }
  fi
}
