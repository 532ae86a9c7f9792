-- Waitlists (issue 19), decided by the database like every write: as in the embedded store
-- (state/src/waitlist.rs, state/src/parking/waitlist.rs), a plate whose booking would be
-- refused as full waits in line; when room appears the oldest entry that fits is offered an
-- OFFERED booking that holds the space for `offer_minutes`; accepted in time it becomes
-- CONFIRMED, else it is forgotten and the entry leaves the list, and the room passes on.
--
-- Uniqueness and ownership are constraints: one entry per plate, spot and overlapping
-- window; an offer is one booking of one entry; one driver (owner, else plate) holds at most
-- one offer per lot. Offers are made by parking_offer_room, idempotent, under the lot's row
-- lock, in the same statement (so the same transaction) as every write that may make room,
-- and as the time-driven work (`parking_settle`, `parking_expire`) runs on every node.

-- An offered booking is active: it counts against the spot rule, `bookable` and (inside
-- its window) the free count, like a confirmed one.
DO $$
DECLARE
    name_ text;
BEGIN
    FOR name_ IN SELECT conname FROM pg_constraint
                     WHERE conrelid = 'parking_bookings'::regclass
                       AND (contype = 'x' OR (contype = 'c' AND conname LIKE '%status%')) LOOP
        EXECUTE format('ALTER TABLE parking_bookings DROP CONSTRAINT %I', name_);
    END LOOP;
END $$;

ALTER TABLE parking_bookings
    -- When an OFFERED booking's offer runs out (Unix seconds).
    ADD COLUMN offered_until bigint,
    ADD CONSTRAINT parking_bookings_status CHECK (status IN
        ('CONFIRMED', 'CHECKED_IN', 'COMPLETED', 'CANCELLED', 'NO_SHOW', 'OFFERED')),
    ADD CONSTRAINT parking_bookings_offer CHECK ((status = 'OFFERED') = (offered_until IS NOT NULL)),
    ADD CONSTRAINT parking_bookings_spot_rule EXCLUDE USING gist (lot WITH =, spot WITH =, during WITH &&)
        WHERE (status IN ('CONFIRMED', 'CHECKED_IN', 'OFFERED'));

DROP INDEX parking_bookings_active;
CREATE INDEX parking_bookings_active ON parking_bookings USING gist (lot, during)
    WHERE status IN ('CONFIRMED', 'CHECKED_IN', 'OFFERED');

-- The number the lot's next waitlist entry gets.
ALTER TABLE parking_lots ADD COLUMN next_wait bigint NOT NULL DEFAULT 1;

CREATE TABLE parking_waitlist (
    lot           text      NOT NULL REFERENCES parking_lots (id),
    seq           bigint    NOT NULL,
    spot          text,
    plate         text      NOT NULL,
    during        int8range NOT NULL CHECK (NOT isempty(during)),
    -- The key id or driver that joined; only it may accept or leave.
    owner         text,
    joined_at     bigint    NOT NULL,
    -- The live offer: the OFFERED booking holding the space, and until when.
    offer_booking bigint,
    offer_expires bigint,
    PRIMARY KEY (lot, seq),
    CHECK ((offer_booking IS NULL) = (offer_expires IS NULL)),
    FOREIGN KEY (lot, offer_booking) REFERENCES parking_bookings (lot, seq),
    -- A space is offered to one entry.
    UNIQUE (lot, offer_booking),
    -- Once per plate, spot and overlapping window.
    EXCLUDE USING gist (lot WITH =, plate WITH =, (coalesce(spot, '')) WITH =, during WITH &&)
);

-- One offer per driver (the owner, or the plate when there is none) per lot at a time.
CREATE UNIQUE INDEX parking_waitlist_one_offer_per_driver ON parking_waitlist
    (lot, (coalesce('owner:' || owner, 'plate:' || plate))) WHERE offer_booking IS NOT NULL;

-- A booking as state::Booking serialises it, the offer's end included.
CREATE OR REPLACE FUNCTION parking_booking_json(b parking_bookings) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('id', b.lot || '.' || b.seq, 'lot', b.lot, 'spot', b.spot,
                              'plate', b.plate, 'start', lower(b.during), 'end', upper(b.during),
                              'status', b.status, 'owner', b.owner, 'overstay', b.overstay,
                              'inside', b.inside, 'offered_until', b.offered_until)
$$;

-- An entry as state::WaitEntry serialises it.
CREATE FUNCTION parking_entry_json(w parking_waitlist) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('id', w.lot || '.w' || w.seq, 'lot', w.lot, 'spot', w.spot,
                              'plate', w.plate, 'start', lower(w.during), 'end', upper(w.during),
                              'owner', w.owner, 'joined_at', w.joined_at,
                              'status', CASE WHEN w.offer_booking IS NULL THEN 'WAITING'
                                             ELSE 'OFFERED' END,
                              'offer', CASE WHEN w.offer_booking IS NULL THEN NULL
                                            ELSE jsonb_build_object(
                                                'booking', w.lot || '.' || w.offer_booking,
                                                'expires_at', w.offer_expires) END)
$$;

-- Entry `p_seq` of `p_lot` as a state::Change: its record, or gone (NULL).
CREATE FUNCTION parking_entry_change(p_lot text, p_seq bigint, p_entry jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('kind', 'waiting', 'id', p_lot || '.w' || p_seq, 'entry', p_entry)
$$;

-- Booking `p_seq` of `p_lot` gone, as a state::Change.
CREATE FUNCTION parking_booking_gone(p_lot text, p_seq bigint) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('kind', 'booking', 'id', p_lot || '.' || p_seq, 'booking', NULL)
$$;

-- The most active bookings (offers included) of `p_lot` at any one instant of `p_window`.
CREATE OR REPLACE FUNCTION parking_peak(p_lot text, p_window int8range) RETURNS integer
LANGUAGE sql STABLE AS $$
    WITH overlapping AS (
        SELECT during FROM parking_bookings
            WHERE lot = p_lot AND status IN ('CONFIRMED', 'CHECKED_IN', 'OFFERED')
              AND during && p_window
    ), steps AS (
        SELECT greatest(lower(during), lower(p_window)) AS at, 1 AS step FROM overlapping
        UNION ALL
        SELECT upper(during), -1 FROM overlapping WHERE upper(during) < upper(p_window)
    )
    SELECT coalesce(max(running), 0)::integer
        FROM (SELECT sum(step) OVER (ORDER BY at, step) AS running FROM steps) AS sweep
$$;

-- Whether a booking of `p_window` (of spot `p_spot`, if given) would be accepted in the lot
-- `p_row` now, as parking_book decides (state/src/bookings.rs `fits`).
CREATE FUNCTION parking_fits(p_row parking_lots, p_spot text, p_window int8range,
                             p_bookable integer, p_now bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT NOT (p_spot IS NOT NULL AND EXISTS (
                    SELECT 1 FROM parking_bookings
                        WHERE lot = p_row.id AND spot = p_spot AND during && p_window
                          AND status IN ('CONFIRMED', 'CHECKED_IN', 'OFFERED')))
       AND parking_peak(p_row.id, p_window) < p_bookable
       AND NOT (p_window @> p_now AND parking_free(p_row) = 0)
$$;

-- Offers the room there is in `p_lot` to its waitlist, oldest entry first: each waiting
-- entry whose window (from now on, if it has begun) fits gets an OFFERED booking holding its
-- space until `p_offer_for` seconds from now (or its window's end), skipping drivers who
-- hold an offer in the lot already. Returns how many offers it made, as one change.
-- Idempotent: what it offered no longer fits, so a second run (another node's, the
-- time-driven work's) offers nothing more; nothing is done without someone waiting.
CREATE FUNCTION parking_offer_room(p_lot text, p_bookable integer, p_offer_for bigint)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    l parking_lots%ROWTYPE;
    w parking_waitlist%ROWTYPE;
    b parking_bookings%ROWTYPE;
    now_s bigint;
    window_ int8range;
    until_ bigint;
    holding_ boolean;
    driver text;
    offered text[];
    changes jsonb := '[]'::jsonb;
    made integer := 0;
BEGIN
    IF p_bookable IS NULL OR NOT EXISTS (SELECT 1 FROM parking_waitlist
                                            WHERE lot = p_lot AND offer_booking IS NULL) THEN
        RETURN 0;
    END IF;
    SELECT * INTO l FROM parking_lots WHERE id = p_lot FOR UPDATE;
    now_s := parking_unix_now();
    offered := ARRAY(SELECT coalesce('owner:' || x.owner, 'plate:' || x.plate)
                         FROM parking_waitlist x
                         WHERE x.lot = p_lot AND x.offer_booking IS NOT NULL);
    FOR w IN SELECT * FROM parking_waitlist
                 WHERE lot = p_lot AND offer_booking IS NULL ORDER BY seq LOOP
        driver := coalesce('owner:' || w.owner, 'plate:' || w.plate);
        CONTINUE WHEN driver = ANY (offered) OR upper(w.during) <= now_s;
        window_ := int8range(greatest(lower(w.during), now_s), upper(w.during));
        CONTINUE WHEN NOT parking_fits(l, w.spot, window_, p_bookable, now_s);
        until_ := least(now_s + p_offer_for, upper(window_));
        holding_ := lower(w.during) <= now_s;
        INSERT INTO parking_bookings (lot, seq, spot, plate, during, status, owner, holding,
                                      due, offered_until)
            VALUES (p_lot, l.next_booking, w.spot, w.plate, window_, 'OFFERED', w.owner,
                    holding_, CASE WHEN holding_ THEN until_ ELSE least(lower(window_), until_) END,
                    until_)
            RETURNING * INTO b;
        UPDATE parking_waitlist x SET offer_booking = b.seq, offer_expires = until_
            WHERE x.lot = p_lot AND x.seq = w.seq
            RETURNING * INTO w;
        -- Kept in the row read under the lock, so the next entry's fit sees this offer.
        l.next_booking := l.next_booking + 1;
        l.held := l.held + holding_::integer;
        changes := changes || jsonb_build_array(parking_booking_change(b),
            parking_entry_change(p_lot, w.seq, parking_entry_json(w)));
        offered := offered || driver;
        made := made + 1;
    END LOOP;
    IF made > 0 THEN
        UPDATE parking_lots SET next_booking = l.next_booking, held = l.held,
                                version = l.version + 1
            WHERE id = p_lot;
        PERFORM parking_announce(p_lot, l.version + 1, changes);
    END IF;
    RETURN made;
END $$;

-- Puts `p_plate` on `p_lot`'s waitlist for [p_start, p_end) (spot `p_spot`, if given) on
-- behalf of `p_owner`: 'joined' with the entry; 'not_full' when a booking of it would be
-- accepted now; 'already' (with the entry) when the plate waits for that spot and an
-- overlapping window; 'waitlist_full' at `p_max` entries. The window's rules and the spot's
-- existence are checked by the caller.
CREATE FUNCTION parking_join(p_lot text, p_spot text, p_plate text, p_start bigint, p_end bigint,
                             p_owner text, p_bookable integer, p_max integer, p_grace bigint,
                             p_retention bigint,
                             OUT outcome text, OUT version bigint, OUT entry jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    l parking_lots%ROWTYPE;
    w parking_waitlist%ROWTYPE;
    window_ int8range := int8range(p_start, p_end);
    now_s bigint := parking_unix_now();
BEGIN
    PERFORM parking_settle(p_lot, p_grace, p_retention, 1000);
    SELECT * INTO l FROM parking_lots WHERE id = p_lot FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'unknown_lot';
        RETURN;
    END IF;
    IF parking_fits(l, p_spot, window_, p_bookable, now_s) THEN
        outcome := 'not_full';
        RETURN;
    END IF;
    SELECT * INTO w FROM parking_waitlist x
        WHERE x.lot = p_lot AND x.plate = p_plate AND x.spot IS NOT DISTINCT FROM p_spot
          AND x.during && window_
        ORDER BY x.seq LIMIT 1;
    IF FOUND THEN
        outcome := 'already';
        entry := parking_entry_json(w);
        RETURN;
    END IF;
    IF (SELECT count(*) FROM parking_waitlist x WHERE x.lot = p_lot) >= p_max THEN
        outcome := 'waitlist_full';
        RETURN;
    END IF;
    INSERT INTO parking_waitlist (lot, seq, spot, plate, during, owner, joined_at)
        VALUES (p_lot, l.next_wait, p_spot, p_plate, window_, p_owner, now_s)
        RETURNING * INTO w;
    UPDATE parking_lots SET next_wait = l.next_wait + 1, version = l.version + 1
        WHERE id = p_lot;
    version := l.version + 1;
    entry := parking_entry_json(w);
    PERFORM parking_announce(p_lot, version,
        jsonb_build_array(parking_entry_change(p_lot, w.seq, entry)));
    outcome := 'joined';
END $$;

-- The owner of entry `p_seq` of `p_lot`, and whether there is one.
CREATE FUNCTION parking_entry_holder(p_lot text, p_seq bigint, OUT found boolean, OUT owner text)
LANGUAGE sql STABLE AS $$
    SELECT count(*) > 0, min(w.owner) FROM parking_waitlist w
        WHERE w.lot = p_lot AND w.seq = p_seq
$$;

-- Takes entry `p_seq` of `p_lot` off the list if its owner is still `p_owner`, letting its
-- offer's booking go. `version` is NULL when nothing was removed. The caller offers the
-- room in the same statement.
CREATE FUNCTION parking_leave(p_lot text, p_seq bigint, p_owner text, OUT version bigint)
LANGUAGE plpgsql AS $$
DECLARE
    l parking_lots%ROWTYPE;
    w parking_waitlist%ROWTYPE;
    b parking_bookings%ROWTYPE;
    changes jsonb;
BEGIN
    SELECT * INTO l FROM parking_lots WHERE id = p_lot FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    DELETE FROM parking_waitlist x
        WHERE x.lot = p_lot AND x.seq = p_seq AND x.owner IS NOT DISTINCT FROM p_owner
        RETURNING * INTO w;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    changes := jsonb_build_array(parking_entry_change(p_lot, p_seq, NULL));
    IF w.offer_booking IS NOT NULL THEN
        DELETE FROM parking_bookings x
            WHERE x.lot = p_lot AND x.seq = w.offer_booking AND x.status = 'OFFERED'
            RETURNING * INTO b;
        IF FOUND THEN
            l.held := l.held - b.holding::integer;
            changes := changes || jsonb_build_array(parking_booking_gone(p_lot, b.seq));
        END IF;
    END IF;
    UPDATE parking_lots SET held = l.held, version = l.version + 1 WHERE id = p_lot;
    version := l.version + 1;
    PERFORM parking_announce(p_lot, version, changes);
END $$;

-- Accepts the live offer of entry `p_seq` of `p_lot` if its owner is still `p_owner`: the
-- OFFERED booking becomes CONFIRMED (a window that has begun begins now, so its check-in
-- grace runs from the acceptance) and the entry leaves the list: 'accepted' with the
-- booking. 'unknown' without such an entry, 'no_offer' when it has no live offer.
CREATE FUNCTION parking_accept(p_lot text, p_seq bigint, p_owner text, p_grace bigint,
                               p_retention bigint,
                               OUT outcome text, OUT version bigint, OUT booking jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    l parking_lots%ROWTYPE;
    w parking_waitlist%ROWTYPE;
    b parking_bookings%ROWTYPE;
    now_s bigint := parking_unix_now();
    window_ int8range;
    holding_ boolean;
BEGIN
    -- An offer whose time has come runs out first: it cannot be accepted after.
    PERFORM parking_settle(p_lot, p_grace, p_retention, 1000);
    SELECT * INTO l FROM parking_lots WHERE id = p_lot FOR UPDATE;
    SELECT * INTO w FROM parking_waitlist x
        WHERE x.lot = p_lot AND x.seq = p_seq AND x.owner IS NOT DISTINCT FROM p_owner;
    IF NOT FOUND THEN
        outcome := 'unknown';
        RETURN;
    END IF;
    SELECT * INTO b FROM parking_bookings x WHERE x.lot = p_lot AND x.seq = w.offer_booking;
    IF NOT FOUND OR b.status <> 'OFFERED' OR now_s >= b.offered_until
       OR now_s >= upper(b.during) THEN
        outcome := 'no_offer';
        RETURN;
    END IF;
    window_ := int8range(greatest(lower(b.during), now_s), upper(b.during));
    holding_ := lower(window_) <= now_s AND now_s < least(lower(window_) + p_grace, upper(window_));
    DELETE FROM parking_waitlist x WHERE x.lot = p_lot AND x.seq = p_seq;
    l.held := l.held - b.holding::integer + holding_::integer;
    UPDATE parking_bookings x SET status = 'CONFIRMED', offered_until = NULL, during = window_,
            holding = holding_,
            due = parking_booking_due('CONFIRMED', holding_, false, false, window_, p_grace,
                                      p_retention)
        WHERE x.lot = p_lot AND x.seq = b.seq
        RETURNING * INTO b;
    UPDATE parking_lots SET held = l.held, version = l.version + 1 WHERE id = p_lot;
    version := l.version + 1;
    booking := parking_booking_json(b);
    PERFORM parking_announce(p_lot, version,
        jsonb_build_array(parking_booking_change(b), parking_entry_change(p_lot, p_seq, NULL)));
    outcome := 'accepted';
END $$;

-- As before (migration 0003), and: an OFFERED booking begins to hold its space at its
-- start, and when its offer runs out (or its window ends) it is forgotten and its entry
-- leaves the list; a waiting entry whose window has ended leaves the list. The time-driven
-- work offers the room this makes in the same statement (parking_offer_room).
CREATE OR REPLACE FUNCTION parking_settle(p_lot text, p_grace bigint, p_retention bigint,
                                          p_limit integer)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    l parking_lots%ROWTYPE;
    b parking_bookings%ROWTYPE;
    w parking_waitlist%ROWTYPE;
    moved_to parking_bookings%ROWTYPE;
    now_s bigint := parking_unix_now();
    status_ text;
    holding_ boolean;
    overstay_ boolean;
    held_change integer := 0;
    changes jsonb := '[]'::jsonb;
    moved integer := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM parking_bookings WHERE lot = p_lot AND due <= now_s)
       AND NOT EXISTS (SELECT 1 FROM parking_waitlist
                           WHERE lot = p_lot AND offer_booking IS NULL
                             AND upper(during) <= now_s) THEN
        RETURN 0;
    END IF;
    SELECT * INTO l FROM parking_lots WHERE id = p_lot FOR UPDATE;
    FOR b IN SELECT * FROM parking_bookings
                 WHERE lot = p_lot AND due <= now_s ORDER BY due, seq LIMIT p_limit LOOP
        moved := moved + 1;
        IF b.status = 'OFFERED' THEN
            IF now_s >= b.offered_until OR now_s >= upper(b.during) THEN
                -- Not taken in time: nothing is left behind, the space passes on.
                DELETE FROM parking_waitlist x WHERE x.lot = p_lot AND x.offer_booking = b.seq
                    RETURNING * INTO w;
                IF FOUND THEN
                    changes := changes || jsonb_build_array(
                        parking_entry_change(p_lot, w.seq, NULL));
                END IF;
                DELETE FROM parking_bookings WHERE lot = p_lot AND seq = b.seq;
                held_change := held_change - b.holding::integer;
                changes := changes || jsonb_build_array(parking_booking_gone(p_lot, b.seq));
            ELSE
                -- Its window has begun: it holds its space until the offer runs out.
                UPDATE parking_bookings SET holding = true, due = b.offered_until
                    WHERE lot = p_lot AND seq = b.seq
                    RETURNING * INTO moved_to;
                held_change := held_change + 1 - b.holding::integer;
                changes := changes || jsonb_build_array(parking_booking_change(moved_to));
            END IF;
            CONTINUE;
        END IF;
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
            changes := changes || jsonb_build_array(parking_booking_gone(p_lot, b.seq));
        ELSE
            UPDATE parking_bookings SET status = status_, holding = holding_, overstay = overstay_,
                    due = parking_booking_due(status_, holding_, b.inside, overstay_, b.during,
                                              p_grace, p_retention)
                WHERE lot = p_lot AND seq = b.seq
                RETURNING * INTO moved_to;
            changes := changes || jsonb_build_array(parking_booking_change(moved_to));
        END IF;
    END LOOP;
    FOR w IN DELETE FROM parking_waitlist x
                 WHERE x.lot = p_lot AND x.offer_booking IS NULL AND upper(x.during) <= now_s
                 RETURNING * LOOP
        changes := changes || jsonb_build_array(parking_entry_change(p_lot, w.seq, NULL));
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
