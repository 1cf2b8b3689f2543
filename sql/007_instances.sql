-- Several skillgated instances on one database (§8): the heartbeat each
-- instance writes, and the recovery of MTs left 'submitting' by an instance
-- that died. Called by core/linklock.c every [gateway] link_lock_interval:
--
--   sg_instance_beat(name, stale_s)   records name's heartbeat; then every
--                                     MT another instance left 'submitting'
--                                     and whose heartbeat is older than
--                                     stale_s seconds goes back to the queue,
--                                     marked maybe_duplicate (as
--                                     sg_mt_recover does for one's own);
--                                     returns how many.
--
-- Only rows whose owner is exactly an instance name are taken: USSD screens
-- ('<instance>/ussd') are never re-sent, as after a crash. The SMPP links
-- themselves are held with session advisory locks
-- (hashtextextended('skillgate-link:' || link, 0)), not stored here: they are
-- released by PostgreSQL when the holder's connection ends.

CREATE TABLE instances (
    name         text PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION sg_instance_beat(p_name text, p_stale_s int) RETURNS bigint
LANGUAGE sql AS $$
    INSERT INTO instances (name) VALUES (p_name)
        ON CONFLICT (name) DO UPDATE SET heartbeat_at = now();
    WITH dead AS (
        SELECT i.name FROM instances i
         WHERE i.name <> p_name AND i.heartbeat_at < now() - make_interval(secs => p_stale_s)),
    u AS (
        UPDATE mt_messages m SET state = 'queued', maybe_duplicate = true
          FROM dead WHERE m.state = 'submitting' AND m.owner = dead.name
        RETURNING 1)
    SELECT count(*) FROM u;
$$;
