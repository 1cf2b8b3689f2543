-- 012_outcomes.sql — submit results and receipts committed together.
--
-- The daemon sends submit_sm results and delivery receipts in one stream, one
-- batch at a time (core/pipeline.c). Results go first: a receipt in the same
-- batch as its submit_sm_resp finds the part just recorded, and a receipt in a
-- later batch finds it committed. Before, results and receipts committed in
-- two concurrent transactions and, under load, most receipts lost the race,
-- were parked in dlr_early and waited for sg_dlr_rematch. Returns how many
-- receipts of the batch are parked (those that overtook their submit_sm_resp).
CREATE FUNCTION sg_mt_outcomes(p_mt bigint[], p_part int[], p_nparts int[], p_link text[],
                               p_status int[], p_smsc text[], p_temp boolean[],
                               d_link text[], d_smsc text[], d_state int[], d_err int[])
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    n_parked int := 0;
BEGIN
    PERFORM sg_mt_results(p_mt, p_part, p_nparts, p_link, p_status, p_smsc, p_temp);
    PERFORM sg_dlr_apply(d_link, d_smsc, d_state, d_err);
    -- receipts of this batch left waiting for their submit_sm_resp
    IF coalesce(cardinality(d_smsc), 0) > 0 THEN
        SELECT count(*) INTO n_parked
          FROM unnest(d_link, d_smsc) AS t(link, smsc)
         WHERE EXISTS (SELECT 1 FROM dlr_early e WHERE e.link = t.link AND e.smsc_id = t.smsc);
    END IF;
    RETURN n_parked;
END $$;
