-- The checkpoint signing key is a file now (IG_LEDGER_KEY_PATH, store/signing_key.py), out of reach of the database
-- roles: the table in which a generated private key used to be kept goes. Checkpoints it signed are handed out
-- signed afresh by the file key (or verify with its verifier key in IG_LEDGER_PREVIOUS_VERIFIER_KEYS).
DROP TABLE IF EXISTS {schema}.ledger_signing_key;
