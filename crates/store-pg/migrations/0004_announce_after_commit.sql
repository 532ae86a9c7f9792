-- Announcements sent after the commit, not inside the writing transaction.
--
-- A transaction that NOTIFYs takes a database-wide lock in its pre-commit step and holds it
-- across its commit's WAL flush, so no two notifying transactions share a group commit:
-- every write announced in its own transaction costs one fsync of its own, one after the
-- other (pgbench, 16 clients, the conditional UPDATE: 0.26-0.29x of the same UPDATE
-- without the NOTIFY; docs/scaling.md). So a session that sets `parking.announce` to
-- `after_commit` (a node does, in its connection options) has `parking_announce` keep the
-- announcement in the transaction instead; the statement that wrote reads it back with
-- `parking_unsent()` in the same statement, and the node, once the commit is through, sends
-- it with `parking_publish` in a transaction of its own that writes nothing, so it waits for
-- no flush. A session without the setting (a node of the previous release during a rolling
-- upgrade, or psql) still announces inside its transaction as before.
--
-- An announcement can now be lost (the node dies between its commit and the publish): the
-- nodes find out from the version that comes next, or from the lot versions they compare
-- every second, and read the lot afresh (crates/store-pg/src/follow.rs).

-- Tells every node that `p_lot` reached `p_version` through `p_changes` (an array of
-- state::Change values). Every function that changes a lot calls it once per change, under
-- the lot's row lock. NOTIFY payloads are limited to 8000 bytes; a larger one is sent
-- without its changes, and nodes read the lot afresh instead.
CREATE OR REPLACE FUNCTION parking_announce(p_lot text, p_version bigint, p_changes jsonb)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    payload text := jsonb_build_object('lot', p_lot, 'version', p_version, 'changes', p_changes)::text;
    unsent text := current_setting('parking.unsent', true);
BEGIN
    IF octet_length(payload) > 7900 THEN
        payload := jsonb_build_object('lot', p_lot, 'version', p_version)::text;
    END IF;
    IF current_setting('parking.announce', true) IS DISTINCT FROM 'after_commit' THEN
        PERFORM pg_notify('parking_changes', payload);
        RETURN;
    END IF;
    -- Kept in a setting local to the transaction: rolled back with it, gone after it. A
    -- payload is JSON text, which holds no raw newline, so newlines separate them.
    PERFORM set_config('parking.unsent',
        CASE WHEN coalesce(unsent, '') = '' THEN payload ELSE unsent || E'\n' || payload END,
        true);
END $$;

-- The announcements this transaction has made so far and not yet taken, oldest first; takes
-- them. A node calls it in the statement that writes, after the write function:
--     SELECT w.*, parking_unsent() FROM parking_reserve(...) AS w
-- (the function in FROM runs before the select list is computed).
CREATE FUNCTION parking_unsent() RETURNS text[]
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    unsent text := current_setting('parking.unsent', true);
BEGIN
    PERFORM set_config('parking.unsent', '', true);
    RETURN coalesce(string_to_array(nullif(unsent, ''), E'\n'), '{}');
END $$;

-- Sends committed announcements, in the order given: what a node calls after its commit,
-- many at once, in a transaction that writes nothing else.
CREATE FUNCTION parking_publish(p_payloads text[]) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    payload text;
BEGIN
    FOREACH payload IN ARRAY p_payloads LOOP
        PERFORM pg_notify('parking_changes', payload);
    END LOOP;
END $$;
