-- A reserve and a cancel as one short statement each, doing the least while the lot's row
-- lock is held.
--
-- Every change of a lot holds the lot's row lock until its commit's WAL flush is through,
-- so the writes of one lot follow each other one commit at a time: what a write does
-- between taking the lock and committing is what every other write of the lot waits for.
-- parking_reserve (0001) read the lot, took the lock with a `FOR UPDATE` re-read (a WAL
-- record of its own), checked again, inserted, updated the lot and built the announcement
-- as jsonb under the lock; a cancel was two statements (parking_holder, then
-- parking_cancel). These do under the lock only the conditional UPDATE of the lot (which
-- takes the lock) and the one row change, and announce nothing: the node that calls them
-- builds the announcement itself from what it sent and what they answer, and sends it
-- after the commit (0004, crates/store-pg/src/announce.rs). The earlier functions stay as
-- they were, for a node of the previous release during a rolling upgrade.
--
-- The lock order is the one every other function keeps: the lot's row first, then its
-- reservations, so these never deadlock with the expiry work or the booking functions. A
-- refusal (the plate holds one already, the lot is full, the reservation is not there) is
-- found before the lock, without writing: a read-only transaction, which commits without a
-- WAL flush.

-- Holds a space in `p_lot` for `p_plate` for `p_ttl_ms`, as parking_reserve does ('exists',
-- 'full', 'unknown_lot' or 'reserved' with the lot's new version and the expiry), but
-- without announcing it: the caller announces what it was answered once it has committed.
CREATE FUNCTION parking_reserve_quietly(p_lot text, p_plate text, p_ttl_ms bigint,
                                        p_owner text, OUT outcome text, OUT version bigint,
                                        OUT expires_at_ms bigint)
LANGUAGE plpgsql AS $$
DECLARE
    until timestamptz := now() + p_ttl_ms * interval '1 millisecond';
BEGIN
    IF EXISTS (SELECT 1 FROM parking_reservations r WHERE r.lot = p_lot AND r.plate = p_plate)
    THEN
        outcome := 'exists';
        RETURN;
    END IF;
    -- Takes the lock, and re-checks the room on the lot as it is once the lock is had (a
    -- write that waited for the lock sees the row the one before it committed).
    UPDATE parking_lots l SET reserved = l.reserved + 1, version = l.version + 1
        WHERE l.id = p_lot AND parking_free(l) > 0
        RETURNING l.version INTO version;
    IF NOT FOUND THEN
        outcome := CASE WHEN EXISTS (SELECT 1 FROM parking_lots WHERE id = p_lot) THEN 'full'
                        ELSE 'unknown_lot' END;
        RETURN;
    END IF;
    INSERT INTO parking_reservations (lot, plate, expires_at, owner)
        VALUES (p_lot, p_plate, until, p_owner)
        ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        -- The same plate was reserved in this lot by another writer since the check above
        -- (it held the lock first): this one changes nothing after all. Nobody saw the
        -- count or the version in between, since the lock is still held.
        UPDATE parking_lots l SET reserved = l.reserved - 1, version = l.version - 1
            WHERE l.id = p_lot;
        outcome := 'exists';
        version := NULL;
        RETURN;
    END IF;
    outcome := 'reserved';
    expires_at_ms := parking_ms(until);
END $$;

-- Removes `p_plate`'s reservation in `p_lot` if its owner is `p_owner` (NULL for none), as
-- parking_cancel does, but without announcing it. `version` is the lot's new version, NULL
-- when nothing was removed (no such reservation, or another owner's).
CREATE FUNCTION parking_cancel_quietly(p_lot text, p_plate text, p_owner text,
                                       OUT version bigint)
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM parking_reservations r
                       WHERE r.lot = p_lot AND r.plate = p_plate
                         AND r.owner IS NOT DISTINCT FROM p_owner) THEN
        RETURN;
    END IF;
    -- `reserved > 0`: a cancel that waited for the lock behind one that removed the lot's
    -- last reservation finds nothing to count down.
    UPDATE parking_lots l SET reserved = l.reserved - 1, version = l.version + 1
        WHERE l.id = p_lot AND l.reserved > 0
        RETURNING l.version INTO version;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    DELETE FROM parking_reservations r
        WHERE r.lot = p_lot AND r.plate = p_plate AND r.owner IS NOT DISTINCT FROM p_owner;
    IF NOT FOUND THEN
        -- Removed (cancelled, expired) or handed to another owner by a writer that held the
        -- lock first: nothing changes after all, as in parking_reserve_quietly.
        UPDATE parking_lots l SET reserved = l.reserved + 1, version = l.version - 1
            WHERE l.id = p_lot;
        version := NULL;
    END IF;
END $$;
