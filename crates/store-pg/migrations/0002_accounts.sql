-- Drivers' accounts, in no lot: every node registers and logs in against the same rows, so a
-- driver may register through one node and log in through another.

CREATE TABLE parking_accounts (
    -- Uniqueness is the key: two nodes registering one name at once make one account.
    username      text   PRIMARY KEY,
    -- The password's Argon2id hash as a PHC string (its salt and parameters inside); the
    -- password itself never reaches the database.
    password_hash text   NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    -- Unix seconds.
    created_at    bigint NOT NULL
);

-- Makes the account unless the name is taken ('exists') or `p_max` accounts exist already
-- ('too_many'); 'made' otherwise. Registrations queue on one advisory lock (logins do not),
-- so the count is exact under concurrency; the key is the backstop for the name.
CREATE FUNCTION parking_create_account(p_username text, p_hash text, p_created_at bigint,
                                       p_max bigint) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(8097879410644772610);  -- "parking" and 2
    IF EXISTS (SELECT 1 FROM parking_accounts WHERE username = p_username) THEN
        RETURN 'exists';
    END IF;
    IF (SELECT count(*) FROM parking_accounts) >= p_max THEN
        RETURN 'too_many';
    END IF;
    INSERT INTO parking_accounts (username, password_hash, created_at)
        VALUES (p_username, p_hash, p_created_at);
    RETURN 'made';
END $$;
