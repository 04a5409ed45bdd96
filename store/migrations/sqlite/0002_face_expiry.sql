-- The face nonce has its own lifetime ([face] ttl_secs), shorter than the challenge's.
ALTER TABLE challenges ADD COLUMN face_expires_at BIGINT;
