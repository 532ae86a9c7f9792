-- Gate lines (the sensor port's ENTER/EXIT), decided by the database like every write.
--
-- A car through a lot's gate is one change of the lot, as in the embedded store
-- (state/src/parking/bookings.rs `pass_gate`): the running count moves by one (unclamped,
-- within +-2^40; what is reported as occupied is it clamped to [0, capacity]), ENTER
-- consumes the plate's live reservation and checks in its confirmed booking whose check-in
-- is open, EXIT marks the car out of the booking it is in and completes it. All of it under
-- the lot's row lock, one version, one announcement, one commit: gate lines from several
-- nodes at once queue on the lock and none is lost.

-- Passes `p_plate` through `p_lot`'s gate, in (`p_enter`) or out. `counted` is NULL for a
-- lot the database lacks. `version` is NULL when nothing changed (the count at its bound
-- and nothing else to do), `booking` the id of the booking checked in or completed,
-- `consumed` whether a reservation was, `changes` the state::Change values announced.
-- `p_early`, `p_grace` and `p_retention` are the booking rules in seconds, as for
-- parking_check_in.
CREATE FUNCTION parking_gate(p_lot text, p_plate text, p_enter boolean, p_early bigint,
                             p_grace bigint, p_retention bigint,
                             OUT counted bigint, OUT free integer, OUT version bigint,
                             OUT booking text, OUT consumed boolean, OUT changes jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    l parking_lots%ROWTYPE;
    b parking_bookings%ROWTYPE;
    limit_ bigint := 1099511627776;
    now_s bigint;
    reserved_ integer;
    held_ integer;
BEGIN
    -- As every booking write does: a booking past its no-show time is a no-show before
    -- its car is let in against it.
    PERFORM parking_settle(p_lot, p_grace, p_retention, 1000);
    SELECT * INTO l FROM parking_lots WHERE id = p_lot FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    now_s := parking_unix_now();
    changes := '[]'::jsonb;
    consumed := false;
    reserved_ := l.reserved;
    held_ := l.held;
    counted := greatest(-limit_, least(limit_, l.counted + CASE WHEN p_enter THEN 1 ELSE -1 END));
    IF counted <> l.counted THEN
        changes := changes || jsonb_build_array(
            jsonb_build_object('kind', 'count', 'lot', p_lot, 'counted', counted));
    END IF;
    IF p_enter THEN
        -- Only a live one: one past its time is parking_expire's, as it is the purge's in
        -- memory.
        DELETE FROM parking_reservations r
            WHERE r.lot = p_lot AND r.plate = p_plate AND r.expires_at > now();
        IF FOUND THEN
            consumed := true;
            reserved_ := reserved_ - 1;
            changes := changes || jsonb_build_array(
                parking_reservation_change(p_lot, p_plate, NULL, NULL));
        END IF;
        -- The earliest confirmed booking of the plate whose check-in has opened.
        SELECT * INTO b FROM parking_bookings x
            WHERE x.lot = p_lot AND x.plate = p_plate AND x.status = 'CONFIRMED'
              AND lower(x.during) - p_early <= now_s
            ORDER BY lower(x.during), x.seq LIMIT 1;
        IF FOUND THEN
            held_ := held_ - b.holding::integer;
            UPDATE parking_bookings x SET status = 'CHECKED_IN', inside = true, holding = false,
                    due = parking_booking_due('CHECKED_IN', false, true, x.overstay, x.during,
                                              p_grace, p_retention)
                WHERE x.lot = p_lot AND x.seq = b.seq
                RETURNING * INTO b;
        END IF;
    ELSE
        -- The earliest booking the car is in: it is out now, and completed if checked in.
        SELECT * INTO b FROM parking_bookings x
            WHERE x.lot = p_lot AND x.plate = p_plate AND x.inside
            ORDER BY lower(x.during), x.seq LIMIT 1;
        IF FOUND THEN
            UPDATE parking_bookings x SET inside = false,
                    status = CASE WHEN x.status = 'CHECKED_IN' THEN 'COMPLETED' ELSE x.status END,
                    due = parking_booking_due(
                        CASE WHEN x.status = 'CHECKED_IN' THEN 'COMPLETED' ELSE x.status END,
                        x.holding, false, x.overstay, x.during, p_grace, p_retention)
                WHERE x.lot = p_lot AND x.seq = b.seq
                RETURNING * INTO b;
        END IF;
    END IF;
    IF b.seq IS NOT NULL THEN
        booking := p_lot || '.' || b.seq;
        changes := changes || jsonb_build_array(parking_booking_change(b));
    END IF;
    IF jsonb_array_length(changes) > 0 THEN
        UPDATE parking_lots SET counted = parking_gate.counted, reserved = reserved_,
                                held = held_, version = l.version + 1
            WHERE id = p_lot
            RETURNING * INTO l;
        version := l.version;
        PERFORM parking_announce(p_lot, version, changes);
    END IF;
    free := parking_free(l);
END $$;
