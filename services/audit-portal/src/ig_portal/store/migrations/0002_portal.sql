-- Browser sessions: the cookie holds a random token; only its SHA-256 is stored.
CREATE TABLE {schema}.sessions (
    token_sha256 text PRIMARY KEY,
    subject      text NOT NULL,
    tenant       text NOT NULL,
    role         text NOT NULL,
    email        text NOT NULL DEFAULT '',
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX sessions_expiry ON {schema}.sessions (expires_at);

-- Login attempts between the redirect to the provider and its callback (PKCE verifier, nonce).
CREATE TABLE {schema}.login_attempts (
    state         text PRIMARY KEY,
    code_verifier text NOT NULL,
    nonce         text NOT NULL,
    return_to     text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Token buckets shared by every portal replica.
CREATE TABLE {schema}.rate_buckets (
    bucket     text PRIMARY KEY,
    capacity   double precision NOT NULL,
    rate       double precision NOT NULL,
    tokens     double precision NOT NULL,
    granted    boolean NOT NULL,
    updated_at timestamptz NOT NULL
);
