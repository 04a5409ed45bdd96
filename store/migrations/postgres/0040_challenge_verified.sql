-- A challenge whose SMS code was right but which is not used up by that (password reset,
-- CONTRACT section 13): the time the code passed, so the next step can require it.
ALTER TABLE challenges ADD COLUMN verified_at BIGINT;
