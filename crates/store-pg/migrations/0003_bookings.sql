-- Time-window bookings (issue 18), decided by the database like every other write.
--
-- The spot rule is a constraint: no two active bookings of one spot overlap, whichever
-- node sent them. The lot-wide rule ("fewer than `bookable` active bookings at every
-- instant of the window, and a free space now if the window includes now") has no
-- constraint: parking_book computes the peak overlap under the lot's row lock, which
-- orders it with every other change of the lot. Times are Unix seconds, as on the wire:
-- `during` is the window [start, end) as an int8range, exact, with no time zone in play.

CREATE EXTENSION IF NOT EXISTS btree_gist;

-- The number the lot's next booking gets, and how many confirmed bookings hold a space now
-- (their window has begun and they are not yet no-shows): the free count subtracts them as
-- it does reservations.
ALTER TABLE parking_lots
    ADD COLUMN next_booking bigint  NOT NULL DEFAULT 1,
    ADD COLUMN held         integer NOT NULL DEFAULT 0 CHECK (held >= 0);

CREATE TABLE parking_bookings (
    lot      text      NOT NULL REFERENCES parking_lots (id),
    seq      bigint    NOT NULL,
    -- A named spot, or NULL for any space of the lot (NULL = NULL is not true, so lot
    -- bookings take no part in the spot rule).
    spot     text,
    plate    text      NOT NULL,
    during   int8range NOT NULL CHECK (NOT isempty(during)),
    status   text      NOT NULL
        CHECK (status IN ('CONFIRMED', 'CHECKED_IN', 'COMPLETED', 'CANCELLED', 'NO_SHOW')),
    -- The key id that made it, when access control is on.
    owner    text,
    -- Checked in and not yet through the exit gate.
    inside   boolean   NOT NULL DEFAULT false,
    overstay boolean   NOT NULL DEFAULT false,
    -- Counted in parking_lots.held.
    holding  boolean   NOT NULL DEFAULT false,
    -- When the time-driven work next has something to do with it (Unix seconds).
    due      bigint    NOT NULL,
    PRIMARY KEY (lot, seq),
    -- The spot rule, as the DL-SMS seed has it; a cancelled, no-show or completed booking
    -- frees its spot.
    EXCLUDE USING gist (lot WITH =, spot WITH =, during WITH &&)
        WHERE (status IN ('CONFIRMED', 'CHECKED_IN'))
);

-- The peak computation looks for a lot's active bookings overlapping a window.
CREATE INDEX parking_bookings_active ON parking_bookings USING gist (lot, during)
    WHERE status IN ('CONFIRMED', 'CHECKED_IN');
-- The time-driven work looks for due bookings across all lots.
CREATE INDEX parking_bookings_due ON parking_bookings (due);

-- Now in whole Unix seconds (the transaction's start, as now() is).
CREATE FUNCTION parking_unix_now() RETURNS bigint
LANGUAGE sql STABLE AS $$ SELECT floor(extract(epoch FROM now()))::bigint $$;

-- A booking as state::Booking serialises it.
CREATE FUNCTION parking_booking_json(b parking_bookings) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('id', b.lot || '.' || b.seq, 'lot', b.lot, 'spot', b.spot,
                              'plate', b.plate, 'start', lower(b.during), 'end', upper(b.during),
                              'status', b.status, 'owner', b.owner, 'overstay', b.overstay,
                              'inside', b.inside)
$$;

-- A booking as a state::Change: its whole record.
CREATE FUNCTION parking_booking_change(b parking_bookings) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('kind', 'booking', 'id', b.lot || '.' || b.seq,
                              'booking', parking_booking_json(b))
$$;

-- When a booking next has something due, as state/src/bookings.rs `next_due` says: a
-- confirmed one begins to hold at its start and is a no-show `checkin_grace` after it (or
-- at its end, if sooner); a checked-in one completes at its end; a car still inside is
-- flagged `checkin_grace` after the end; a finished one is forgotten after `retention`.
CREATE FUNCTION parking_booking_due(p_status text, p_holding boolean, p_inside boolean,
                                    p_overstay boolean, p_during int8range, p_grace bigint,
                                    p_retention bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_status = 'CONFIRMED' AND p_holding
            THEN least(lower(p_during) + p_grace, upper(p_during))
        WHEN p_status = 'CONFIRMED' THEN lower(p_during)
        WHEN p_status = 'CHECKED_IN' THEN upper(p_during)
        WHEN p_status = 'COMPLETED' AND p_inside AND NOT p_overstay
            THEN upper(p_during) + p_grace
        ELSE upper(p_during) + p_retention
    END
$$;

-- The most active bookings of `p_lot` at any one instant of `p_window`: a sweep over the
-- overlapping bookings' starts and ends (an end before a start at the same second, since
-- windows are half-open), as state/src/timeline.rs does in memory.
CREATE FUNCTION parking_peak(p_lot text, p_window int8range) RETURNS integer
LANGUAGE sql STABLE AS $$
    WITH overlapping AS (
        SELECT during FROM parking_bookings
            WHERE lot = p_lot AND status IN ('CONFIRMED', 'CHECKED_IN') AND during && p_window
    ), steps AS (
        SELECT greatest(lower(during), lower(p_window)) AS at, 1 AS step FROM overlapping
        UNION ALL
        SELECT upper(during), -1 FROM overlapping WHERE upper(during) < upper(p_window)
    )
    SELECT coalesce(max(running), 0)::integer
        FROM (SELECT sum(step) OVER (ORDER BY at, step) AS running FROM steps) AS sweep
$$;

-- Free spaces of the lot `p_row` now: capacity less occupied, reserved and held.
CREATE FUNCTION parking_free(p_row parking_lots) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT greatest(0, p_row.capacity - greatest(0, least(p_row.counted, p_row.capacity))::integer
                       - p_row.reserved - p_row.held)
$$;

-- A reserve is refused too when the bookings holding spaces now fill the lot.
CREATE OR REPLACE FUNCTION parking_refusal(p_row parking_lots, p_plate text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN EXISTS (SELECT 1 FROM parking_reservations r
                         WHERE r.lot = p_row.id AND r.plate = p_plate) THEN 'exists'
        WHEN parking_free(p_row) = 0 THEN 'full'
    END
$$;

-- As before, but `reserved` counts the spaces bookings hold too, so that the free count a
-- sensor is answered with subtracts them.
CREATE OR REPLACE FUNCTION parking_count(p_lot text, p_set bigint, p_add bigint,
                              OUT counted bigint, OUT capacity integer, OUT reserved integer,
                              OUT version bigint)
LANGUAGE plpgsql AS $$
DECLARE
    lot parking_lots%ROWTYPE;
    limit_ bigint := 1099511627776;
BEGIN
    SELECT * INTO lot FROM parking_lots WHERE id = p_lot;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF (p_set IS NOT NULL AND lot.counted = greatest(-limit_, least(limit_, p_set)))
       OR (p_set IS NULL AND p_add = 0) THEN
        counted := lot.counted;
        capacity := lot.capacity;
        reserved := lot.reserved + lot.held;
        RETURN;
    END IF;
    SELECT * INTO lot FROM parking_lots WHERE id = p_lot FOR UPDATE;
    counted := greatest(-limit_, least(limit_, coalesce(p_set, lot.counted + p_add)));
    capacity := lot.capacity;
    reserved := lot.reserved + lot.held;
    IF counted = lot.counted THEN
        RETURN;
    END IF;
    UPDATE parking_lots SET counted = parking_count.counted, version = lot.version + 1
        WHERE id = p_lot;
    version := lot.version + 1;
    PERFORM parking_announce(p_lot, version,
        jsonb_build_array(jsonb_build_object('kind', 'count', 'lot', p_lot, 'counted', counted)));
END $$;

-- Moves on up to `p_limit` of `p_lot`'s bookings whose time has come, as one change: a
-- confirmed booking begins to hold its space at its start (announced again, so that every
-- copy counts it), becomes NO_SHOW at its no-show time (releasing the space), a checked-in
-- one COMPLETED at its end, a car still inside is flagged overstaying, a finished booking is
-- forgotten after `p_retention`. Returns how many moved. Idempotent: nodes running it at once
-- queue on the lot's row lock, and each booking's `due` moves past now when it is moved, so
-- the next finds only what is left. The writes below run it first, as the in-memory state
-- brings a lot up to date before each operation.
CREATE FUNCTION parking_settle(p_lot text, p_grace bigint, p_retention bigint, p_limit integer)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    l parking_lots%ROWTYPE;
    b parking_bookings%ROWTYPE;
    moved_to parking_bookings%ROWTYPE;
    now_s bigint := parking_unix_now();
    status_ text;
    holding_ boolean;
    overstay_ boolean;
    held_change integer := 0;
    changes jsonb := '[]'::jsonb;
    moved integer := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM parking_bookings WHERE lot = p_lot AND due <= now_s) THEN
        RETURN 0;
    END IF;
    SELECT * INTO l FROM parking_lots WHERE id = p_lot FOR UPDATE;
    FOR b IN SELECT * FROM parking_bookings
                 WHERE lot = p_lot AND due <= now_s ORDER BY due, seq LIMIT p_limit LOOP
        status_ := b.status;
        holding_ := b.holding;
        overstay_ := b.overstay;
        IF status_ = 'CONFIRMED' AND now_s >= least(lower(b.during) + p_grace, upper(b.during)) THEN
            status_ := 'NO_SHOW';
            holding_ := false;
        ELSIF status_ = 'CONFIRMED' AND now_s >= lower(b.during) THEN
            holding_ := true;
        END IF;
        IF status_ = 'CHECKED_IN' AND now_s >= upper(b.during) THEN
            status_ := 'COMPLETED';
        END IF;
        IF b.inside AND now_s >= upper(b.during) + p_grace THEN
            overstay_ := true;
        END IF;
        held_change := held_change + holding_::integer - b.holding::integer;
        IF status_ NOT IN ('CONFIRMED', 'CHECKED_IN') AND now_s >= upper(b.during) + p_retention THEN
            DELETE FROM parking_bookings WHERE lot = p_lot AND seq = b.seq;
            changes := changes || jsonb_build_array(jsonb_build_object(
                'kind', 'booking', 'id', p_lot || '.' || b.seq, 'booking', NULL));
        ELSE
            UPDATE parking_bookings SET status = status_, holding = holding_, overstay = overstay_,
                    due = parking_booking_due(status_, holding_, b.inside, overstay_, b.during,
                                              p_grace, p_retention)
                WHERE lot = p_lot AND seq = b.seq
                RETURNING * INTO moved_to;
            changes := changes || jsonb_build_array(parking_booking_change(moved_to));
        END IF;
        moved := moved + 1;
    END LOOP;
    IF moved = 0 THEN
        RETURN 0;
    END IF;
    UPDATE parking_lots SET held = l.held + held_change, version = l.version + 1
        WHERE id = p_lot;
    PERFORM parking_announce(p_lot, l.version + 1, changes);
    RETURN moved;
END $$;

-- Books a space of `p_lot` (or its spot `p_spot`) for `p_plate` over [p_start, p_end), unless
-- the lot has `p_bookable` active bookings at some instant of it ('full'), the window
-- includes now and no space is free now ('no_space_now'), or an active booking of the spot
-- overlaps it ('spot_taken', from the exclusion constraint). The window's rules and the
-- spot's existence are checked by the caller.
CREATE FUNCTION parking_book(p_lot text, p_spot text, p_plate text, p_start bigint, p_end bigint,
                             p_owner text, p_bookable integer, p_grace bigint, p_retention bigint,
                             OUT outcome text, OUT version bigint, OUT booking jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    l parking_lots%ROWTYPE;
    b parking_bookings%ROWTYPE;
    window_ int8range := int8range(p_start, p_end);
    now_s bigint := parking_unix_now();
    holding_ boolean;
BEGIN
    PERFORM parking_settle(p_lot, p_grace, p_retention, 1000);
    -- The row lock orders this booking with every other change of the lot: the peak below
    -- cannot change until this transaction ends.
    SELECT * INTO l FROM parking_lots WHERE id = p_lot FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'unknown_lot';
        RETURN;
    END IF;
    IF parking_peak(p_lot, window_) >= p_bookable THEN
        outcome := 'full';
        RETURN;
    END IF;
    IF window_ @> now_s AND parking_free(l) = 0 THEN
        outcome := 'no_space_now';
        RETURN;
    END IF;
    holding_ := p_start <= now_s AND now_s < least(p_start + p_grace, p_end);
    BEGIN
        INSERT INTO parking_bookings (lot, seq, spot, plate, during, status, owner, holding, due)
            VALUES (p_lot, l.next_booking, p_spot, p_plate, window_, 'CONFIRMED', p_owner,
                    holding_, parking_booking_due('CONFIRMED', holding_, false, false, window_,
                                                  p_grace, p_retention))
            RETURNING * INTO b;
    EXCEPTION WHEN exclusion_violation THEN
        outcome := 'spot_taken';
        RETURN;
    END;
    UPDATE parking_lots SET next_booking = l.next_booking + 1,
                            held = l.held + holding_::integer,
                            version = l.version + 1
        WHERE id = p_lot;
    version := l.version + 1;
    booking := parking_booking_json(b);
    PERFORM parking_announce(p_lot, version, jsonb_build_array(parking_booking_change(b)));
    outcome := 'booked';
END $$;

-- Booking `p_seq` of `p_lot`, brought up to date first (so a no-show reads as one).
CREATE FUNCTION parking_booking(p_lot text, p_seq bigint, p_grace bigint, p_retention bigint)
RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM parking_settle(p_lot, p_grace, p_retention, 1000);
    RETURN (SELECT parking_booking_json(b) FROM parking_bookings b
                WHERE b.lot = p_lot AND b.seq = p_seq);
END $$;

-- Cancels booking `p_seq` of `p_lot` if it is confirmed and its owner is still `p_owner`
-- (the caller judged that owner allowed). `version` is NULL when nothing was cancelled.
CREATE FUNCTION parking_cancel_booking(p_lot text, p_seq bigint, p_owner text, p_grace bigint,
                                       p_retention bigint, OUT version bigint, OUT booking jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    l parking_lots%ROWTYPE;
    b parking_bookings%ROWTYPE;
    was_holding boolean;
BEGIN
    PERFORM parking_settle(p_lot, p_grace, p_retention, 1000);
    SELECT * INTO l FROM parking_lots WHERE id = p_lot FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT holding INTO was_holding FROM parking_bookings
        WHERE lot = p_lot AND seq = p_seq AND status = 'CONFIRMED'
          AND owner IS NOT DISTINCT FROM p_owner;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE parking_bookings x SET status = 'CANCELLED', holding = false,
            due = parking_booking_due('CANCELLED', false, x.inside, x.overstay, x.during,
                                      p_grace, p_retention)
        WHERE x.lot = p_lot AND x.seq = p_seq
        RETURNING * INTO b;
    UPDATE parking_lots SET held = l.held - was_holding::integer, version = l.version + 1
        WHERE id = p_lot;
    version := l.version + 1;
    booking := parking_booking_json(b);
    PERFORM parking_announce(p_lot, version, jsonb_build_array(parking_booking_change(b)));
END $$;

-- Checks booking `p_seq` of `p_lot` in if it is confirmed, its owner is still `p_owner` and
-- check-in has opened (`p_early` seconds before its start): 'checked_in'; else 'unknown',
-- 'bad_state' or 'not_due', with the booking as it is.
CREATE FUNCTION parking_check_in(p_lot text, p_seq bigint, p_owner text, p_early bigint,
                                 p_grace bigint, p_retention bigint,
                                 OUT outcome text, OUT version bigint, OUT booking jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    l parking_lots%ROWTYPE;
    b parking_bookings%ROWTYPE;
    was_holding boolean;
BEGIN
    PERFORM parking_settle(p_lot, p_grace, p_retention, 1000);
    SELECT * INTO l FROM parking_lots WHERE id = p_lot FOR UPDATE;
    SELECT * INTO b FROM parking_bookings
        WHERE lot = p_lot AND seq = p_seq AND owner IS NOT DISTINCT FROM p_owner;
    IF NOT FOUND THEN
        outcome := 'unknown';
        RETURN;
    END IF;
    booking := parking_booking_json(b);
    IF b.status <> 'CONFIRMED' THEN
        outcome := 'bad_state';
        RETURN;
    END IF;
    IF parking_unix_now() < lower(b.during) - p_early THEN
        outcome := 'not_due';
        RETURN;
    END IF;
    was_holding := b.holding;
    UPDATE parking_bookings x SET status = 'CHECKED_IN', inside = true, holding = false,
            due = parking_booking_due('CHECKED_IN', false, true, x.overstay, x.during,
                                      p_grace, p_retention)
        WHERE x.lot = p_lot AND x.seq = p_seq
        RETURNING * INTO b;
    UPDATE parking_lots SET held = l.held - was_holding::integer, version = l.version + 1
        WHERE id = p_lot;
    version := l.version + 1;
    booking := parking_booking_json(b);
    PERFORM parking_announce(p_lot, version, jsonb_build_array(parking_booking_change(b)));
    outcome := 'checked_in';
END $$;
