-- Lots, their sensor counts and reservations; the functions that change them.
--
-- Every change of a lot happens under that lot's row lock, bumps the lot's `version` by one
-- and announces itself with `parking_announce`, in the same transaction: so versions are
-- handed out in commit order per lot, and a node that applies each lot's announcements in
-- version order holds what the database holds.

CREATE TABLE parking_lots (
    id       text    PRIMARY KEY,
    capacity integer NOT NULL CHECK (capacity > 0),
    -- The sensors' running count, unclamped (within +-2^40, state::lot::COUNT_LIMIT).
    counted  bigint  NOT NULL DEFAULT 0,
    -- Rows of parking_reservations for this lot, kept by the functions below so that a
    -- reserve's capacity check reads one row instead of counting.
    reserved integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    -- One more for every committed change of this lot.
    version  bigint  NOT NULL DEFAULT 0
);

CREATE TABLE parking_reservations (
    lot        text        NOT NULL REFERENCES parking_lots (id),
    -- Uniqueness is the key: a plate holds at most one reservation per lot.
    plate      text        NOT NULL,
    expires_at timestamptz NOT NULL,
    -- The key id that made it, when access control is on; only it may cancel.
    owner      text,
    PRIMARY KEY (lot, plate)
);

-- The expiry work looks for due reservations across all lots.
CREATE INDEX parking_reservations_due ON parking_reservations (expires_at);

-- Milliseconds since the Unix epoch, as state::Change carries times.
CREATE FUNCTION parking_ms(at timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT (extract(epoch FROM at) * 1000)::bigint $$;

-- Tells every node that `p_lot` reached `p_version` through `p_changes` (an array of
-- state::Change values). NOTIFY payloads are limited to 8000 bytes; a larger one is sent
-- without its changes, and nodes read the lot afresh instead.
CREATE FUNCTION parking_announce(p_lot text, p_version bigint, p_changes jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    payload text := jsonb_build_object('lot', p_lot, 'version', p_version, 'changes', p_changes)::text;
BEGIN
    IF octet_length(payload) > 7900 THEN
        payload := jsonb_build_object('lot', p_lot, 'version', p_version)::text;
    END IF;
    PERFORM pg_notify('parking_changes', payload);
END $$;

-- A reservation as a state::Change: held until `expires_at`, or gone (NULL).
CREATE FUNCTION parking_reservation_change(p_lot text, p_plate text, p_expires_at timestamptz,
                                           p_owner text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('kind', 'reservation', 'lot', p_lot, 'plate', p_plate,
                              'expires_at_ms', parking_ms(p_expires_at), 'owner', p_owner)
$$;

-- Why a reserve of `p_plate` in the lot `p_row` is refused ('exists' or 'full'), or NULL.
CREATE FUNCTION parking_refusal(p_row parking_lots, p_plate text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN EXISTS (SELECT 1 FROM parking_reservations r
                         WHERE r.lot = p_row.id AND r.plate = p_plate) THEN 'exists'
        WHEN greatest(0, least(p_row.counted, p_row.capacity)) + p_row.reserved >= p_row.capacity
            THEN 'full'
    END
$$;

-- Holds a space in `p_lot` for `p_plate` for `p_ttl_ms`, unless the plate holds one there
-- already ('exists') or occupied plus reserved spaces reach the capacity ('full'). A
-- reservation past its time still counts until parking_expire removes it, which every node
-- runs as its time comes: the database alone decides when a reservation ends.
CREATE FUNCTION parking_reserve(p_lot text, p_plate text, p_ttl_ms bigint, p_owner text,
                                OUT outcome text, OUT version bigint, OUT expires_at_ms bigint)
LANGUAGE plpgsql AS $$
DECLARE
    lot parking_lots%ROWTYPE;
    until timestamptz := now() + p_ttl_ms * interval '1 millisecond';
BEGIN
    -- Looked at without a lock first: a refusal is then a read-only transaction, which
    -- commits without a WAL flush (a full lot refuses many), and is right as of the
    -- moment it read.
    SELECT * INTO lot FROM parking_lots WHERE id = p_lot;
    IF NOT FOUND THEN
        outcome := 'unknown_lot';
        RETURN;
    END IF;
    outcome := parking_refusal(lot, p_plate);
    IF outcome IS NOT NULL THEN
        RETURN;
    END IF;
    -- The lot's row lock orders this reserve with every other change of the lot; what was
    -- read before it may have changed meanwhile, so it is read again under it.
    SELECT * INTO lot FROM parking_lots WHERE id = p_lot FOR UPDATE;
    outcome := parking_refusal(lot, p_plate);
    IF outcome IS NOT NULL THEN
        RETURN;
    END IF;
    INSERT INTO parking_reservations (lot, plate, expires_at, owner)
        VALUES (p_lot, p_plate, until, p_owner);
    UPDATE parking_lots SET reserved = lot.reserved + 1, version = lot.version + 1
        WHERE id = p_lot;
    version := lot.version + 1;
    expires_at_ms := parking_ms(until);
    PERFORM parking_announce(p_lot, version,
        jsonb_build_array(parking_reservation_change(p_lot, p_plate, until, p_owner)));
    outcome := 'reserved';
END $$;

-- The owner of `p_plate`'s reservation in `p_lot`, and whether there is one.
CREATE FUNCTION parking_holder(p_lot text, p_plate text, OUT held boolean, OUT owner text)
LANGUAGE sql STABLE AS $$
    SELECT count(*) > 0, min(r.owner) FROM parking_reservations r
        WHERE r.lot = p_lot AND r.plate = p_plate
$$;

-- Removes `p_plate`'s reservation in `p_lot` if its owner is still `p_owner` (NULL for
-- none): the caller judged that owner allowed, and a reservation that has changed hands
-- since is not cancelled. `version` is NULL when nothing was removed.
CREATE FUNCTION parking_cancel(p_lot text, p_plate text, p_owner text, OUT version bigint)
LANGUAGE plpgsql AS $$
DECLARE
    lot parking_lots%ROWTYPE;
BEGIN
    SELECT * INTO lot FROM parking_lots WHERE id = p_lot FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    DELETE FROM parking_reservations r
        WHERE r.lot = p_lot AND r.plate = p_plate AND r.owner IS NOT DISTINCT FROM p_owner;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE parking_lots SET reserved = lot.reserved - 1, version = lot.version + 1
        WHERE id = p_lot;
    version := lot.version + 1;
    PERFORM parking_announce(p_lot, version,
        jsonb_build_array(parking_reservation_change(p_lot, p_plate, NULL, NULL)));
END $$;

-- Applies a sensor's report to `p_lot`'s running count: `p_set` when given, else the count
-- plus `p_add` (negative for cars leaving), bounded to +-2^40. Returns the lot after it;
-- `version` is NULL when the count did not change (nothing announced).
CREATE FUNCTION parking_count(p_lot text, p_set bigint, p_add bigint,
                              OUT counted bigint, OUT capacity integer, OUT reserved integer,
                              OUT version bigint)
LANGUAGE plpgsql AS $$
DECLARE
    lot parking_lots%ROWTYPE;
    limit_ bigint := 1099511627776;
BEGIN
    -- As in parking_reserve: a report that changes nothing (a sensor repeating its count)
    -- is answered without a lock, as a read-only transaction.
    SELECT * INTO lot FROM parking_lots WHERE id = p_lot;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF (p_set IS NOT NULL AND lot.counted = greatest(-limit_, least(limit_, p_set)))
       OR (p_set IS NULL AND p_add = 0) THEN
        counted := lot.counted;
        capacity := lot.capacity;
        reserved := lot.reserved;
        RETURN;
    END IF;
    SELECT * INTO lot FROM parking_lots WHERE id = p_lot FOR UPDATE;
    counted := greatest(-limit_, least(limit_, coalesce(p_set, lot.counted + p_add)));
    capacity := lot.capacity;
    reserved := lot.reserved;
    IF counted = lot.counted THEN
        RETURN;
    END IF;
    UPDATE parking_lots SET counted = parking_count.counted, version = lot.version + 1
        WHERE id = p_lot;
    version := lot.version + 1;
    PERFORM parking_announce(p_lot, version,
        jsonb_build_array(jsonb_build_object('kind', 'count', 'lot', p_lot, 'counted', counted)));
END $$;

-- Removes up to `p_limit` of `p_lot`'s reservations whose time has come, as one change;
-- returns how many. Idempotent, so any number of nodes may run it at once: they queue on
-- the lot's row lock, and each finds only what the one before it left.
CREATE FUNCTION parking_expire(p_lot text, p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    lot parking_lots%ROWTYPE;
    gone text[];
BEGIN
    SELECT * INTO lot FROM parking_lots WHERE id = p_lot FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    WITH due AS (
        DELETE FROM parking_reservations r
            WHERE r.lot = p_lot AND r.plate IN (
                SELECT d.plate FROM parking_reservations d
                    WHERE d.lot = p_lot AND d.expires_at <= now()
                    ORDER BY d.expires_at LIMIT p_limit)
            RETURNING r.plate)
    SELECT array_agg(plate) INTO gone FROM due;
    IF gone IS NULL THEN
        RETURN 0;
    END IF;
    UPDATE parking_lots SET reserved = lot.reserved - cardinality(gone), version = lot.version + 1
        WHERE id = p_lot;
    PERFORM parking_announce(p_lot, lot.version + 1,
        (SELECT jsonb_agg(parking_reservation_change(p_lot, plate, NULL, NULL)) FROM unnest(gone) AS plate));
    RETURN cardinality(gone);
END $$;
