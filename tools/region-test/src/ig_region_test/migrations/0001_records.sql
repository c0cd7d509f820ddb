-- A residency-pinned tenant's own records: this database exists only in the tenant's home region.
CREATE TABLE IF NOT EXISTS {schema}.records (
    id          text PRIMARY KEY,
    tenant      text NOT NULL,
    home_region text NOT NULL,
    payload     text NOT NULL,
    written_at  timestamptz NOT NULL DEFAULT now()
);
