"""Pure decision logic: requests, validation, engine answers, masking and log records. No I/O here."""
