-- 020_bulk_msisdn_index.sql — only campaign messages are looked up by number.
--
-- mt_messages_msisdn (001) indexed every message by (msisdn, created_at).
-- Two statements read mt_messages by number, and both only campaign
-- messages: the daily cap (sg_bulk_guard: kind IN ('broadcast',
-- 'reminder')) and the cancellation of a number's queued bulk messages when
-- it opts out (sg_mo_apply: priority > 0). Replies, USSD screens and API
-- messages (priority 0) were indexed for nothing: two entries each (the
-- insert, then the update to their final state, which cannot be HOT), about
-- 2 of the 5 index insertions a reply costs, at random places of an index
-- as big as the table. The index now holds the messages those two
-- statements can match: each statement's own condition implies the
-- predicate, so the planner uses it for both.
DROP INDEX IF EXISTS mt_messages_msisdn;
CREATE INDEX IF NOT EXISTS mt_messages_bulk_msisdn ON mt_messages (msisdn)
    WHERE kind IN ('broadcast', 'reminder') OR priority > 0;
