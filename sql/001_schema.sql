-- skillgate schema v1: localities, households, subscribers, skills, proficiency,
-- messages (MO, MT and their parts), flow and USSD sessions, broadcasts,
-- reminders and API tokens. Applied by `skillctl migrate` in one transaction.
-- Phone numbers are normalised international digits (84912345678).

CREATE TABLE skills (
    code      text PRIMARY KEY,
    position  smallint NOT NULL UNIQUE CHECK (position BETWEEN 1 AND 5),
    name_vi   text NOT NULL,
    name_en   text NOT NULL
);
INSERT INTO skills VALUES
    ('public_services', 1, 'Sử dụng dịch vụ công trực tuyến', 'Using online public services'),
    ('shopping',        2, 'Mua sắm trực tuyến', 'Online shopping'),
    ('payment',         3, 'Thanh toán trực tuyến', 'Online payment'),
    ('safety',          4, 'Tự bảo vệ trên không gian mạng', 'Self-protection in cyberspace'),
    ('platforms',       5, 'Sử dụng các nền tảng số khác', 'Using other digital platforms');

-- Vietnam's administrative codes: province (2 digits) > district (3) > commune (5).
CREATE TABLE localities (
    code        text PRIMARY KEY,
    level       text NOT NULL CHECK (level IN ('province', 'district', 'commune')),
    parent_code text REFERENCES localities (code),
    name        text NOT NULL,
    CHECK ((level = 'province') = (parent_code IS NULL))
);
CREATE INDEX localities_parent ON localities (parent_code);

CREATE TABLE households (
    id           bigserial PRIMARY KEY,
    code         text NOT NULL UNIQUE,
    commune_code text NOT NULL REFERENCES localities (code),
    village      text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX households_commune ON households (commune_code);

CREATE TABLE subscribers (
    msisdn        text PRIMARY KEY CHECK (msisdn ~ '^[0-9]{8,15}$'),
    language      text NOT NULL DEFAULT 'vi' CHECK (language IN ('vi', 'en')),
    opted_out     boolean NOT NULL DEFAULT false,
    opted_out_at  timestamptz,
    household_id  bigint REFERENCES households (id),
    joined_via    text CHECK (joined_via IN ('sms', 'ussd', 'volunteer', 'import')),
    registered_at timestamptz NOT NULL DEFAULT now(),
    flow_state    text NOT NULL DEFAULT '',
    flow_state_at timestamptz,
    help_at       timestamptz,
    last_mo_at    timestamptz
);
CREATE INDEX subscribers_household ON subscribers (household_id);

-- Current proficiency per (phone, skill); the history is proficiency_events.
CREATE TABLE proficiency (
    msisdn         text NOT NULL REFERENCES subscribers (msisdn),
    skill          text NOT NULL REFERENCES skills (code),
    self_level     smallint CHECK (self_level BETWEEN 0 AND 3),
    self_at        timestamptz,
    self_source    text,
    best_quiz      smallint,
    quiz_passed_at timestamptz,
    quiz_source    text,
    quiz_started_at timestamptz,
    quiz_failed_at timestamptz,
    proficient     boolean NOT NULL DEFAULT false,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (msisdn, skill)
);
CREATE INDEX proficiency_skill ON proficiency (skill) WHERE proficient;

CREATE TABLE proficiency_events (
    id      bigserial PRIMARY KEY,
    msisdn  text NOT NULL,
    skill   text NOT NULL REFERENCES skills (code),
    kind    text NOT NULL CHECK (kind IN ('self', 'quiz')),
    value   smallint NOT NULL,
    passed  boolean,
    source  text NOT NULL CHECK (source IN ('sms', 'ussd', 'volunteer', 'import')),
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX proficiency_events_msisdn ON proficiency_events (msisdn, at);

-- History is append-only.
CREATE FUNCTION sg_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
CREATE TRIGGER proficiency_events_append_only BEFORE UPDATE OR DELETE ON proficiency_events
    FOR EACH ROW EXECUTE FUNCTION sg_append_only();

-- Inbound messages. Committed before deliver_sm_resp.
CREATE TABLE mo_messages (
    id           bigserial PRIMARY KEY,
    link         text NOT NULL,
    smsc_id      text NOT NULL DEFAULT '',
    msisdn       text NOT NULL,
    dest         text NOT NULL DEFAULT '',
    text         text NOT NULL,
    partial      boolean NOT NULL DEFAULT false,
    channel      text NOT NULL DEFAULT 'sms' CHECK (channel IN ('sms', 'ussd', 'http')),
    state        text NOT NULL DEFAULT 'received'
                 CHECK (state IN ('received', 'processed', 'duplicate', 'looping', 'failed')),
    duplicate_of bigint,
    received_at  timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz
);
CREATE UNIQUE INDEX mo_messages_smsc_id ON mo_messages (link, smsc_id) WHERE smsc_id <> '';
CREATE INDEX mo_messages_msisdn ON mo_messages (msisdn, received_at);
CREATE INDEX mo_messages_pending ON mo_messages (id) WHERE state = 'received';

-- Outbound messages: the outbox. Committed before submit_sm.
--   queued -> submitting -> submitted -> delivered | failed | expired ; cancelled
CREATE TABLE mt_messages (
    id              bigserial PRIMARY KEY,
    msisdn          text NOT NULL,
    source          text NOT NULL DEFAULT '',
    text            text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('reply', 'reminder', 'broadcast', 'api', 'ussd')),
    priority        smallint NOT NULL DEFAULT 0,  -- 0 interactive, 1 bulk
    state           text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'submitting', 'submitted', 'delivered', 'failed',
                                     'expired', 'cancelled')),
    owner           text NOT NULL DEFAULT '',     -- instance submitting it
    link            text NOT NULL DEFAULT '',
    fold            boolean NOT NULL DEFAULT false,
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz,
    error_status    int,
    maybe_duplicate boolean NOT NULL DEFAULT false,
    nparts          smallint NOT NULL DEFAULT 0,
    parts_ok        smallint NOT NULL DEFAULT 0,
    parts_delivered smallint NOT NULL DEFAULT 0,
    mo_id           bigint,
    broadcast_id    bigint,
    reminder_id     bigint,
    client_id       text,
    ussd_session    text,
    ussd_end        boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    submitted_at    timestamptz,
    final_at        timestamptz
);
CREATE INDEX mt_messages_due ON mt_messages (priority, next_attempt_at, id) WHERE state = 'queued';
CREATE INDEX mt_messages_inflight ON mt_messages (owner) WHERE state = 'submitting';
CREATE INDEX mt_messages_broadcast ON mt_messages (broadcast_id, state) WHERE broadcast_id IS NOT NULL;
CREATE UNIQUE INDEX mt_messages_client_id ON mt_messages (client_id) WHERE client_id IS NOT NULL;
CREATE INDEX mt_messages_msisdn ON mt_messages (msisdn, created_at);

-- One row per submitted segment, kept until a final receipt.
CREATE TABLE mt_parts (
    mt_id     bigint NOT NULL REFERENCES mt_messages (id),
    part      smallint NOT NULL,
    link      text NOT NULL,
    smsc_id   text NOT NULL,
    state     text NOT NULL DEFAULT 'submitted'
              CHECK (state IN ('submitted', 'delivered', 'failed', 'expired')),
    dlr_err   int,
    at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mt_id, part)
);
CREATE INDEX mt_parts_smsc_id ON mt_parts (link, smsc_id);

-- Receipts that arrived before their submit_sm_resp (matched later).
CREATE TABLE dlr_early (
    link     text NOT NULL,
    smsc_id  text NOT NULL,
    state    smallint NOT NULL,
    err      int,
    at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (link, smsc_id)
);

CREATE TABLE ussd_sessions (
    link        text NOT NULL,
    session_key text NOT NULL,
    msisdn      text NOT NULL,
    state       text NOT NULL DEFAULT '',
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    ended_at    timestamptz,
    PRIMARY KEY (link, session_key)
);

CREATE TABLE broadcasts (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    text_vi     text NOT NULL,
    text_en     text NOT NULL,
    segment     jsonb NOT NULL DEFAULT '{}',
    start_at    timestamptz NOT NULL,
    end_at      timestamptz,
    rate        int,
    state       text NOT NULL DEFAULT 'scheduled'
                CHECK (state IN ('scheduled', 'resolving', 'sending', 'done', 'cancelled')),
    created_by  text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    targeted    int NOT NULL DEFAULT 0
);

CREATE TABLE broadcast_recipients (
    broadcast_id bigint NOT NULL REFERENCES broadcasts (id),
    msisdn       text NOT NULL,
    state        text NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'queued', 'skipped', 'cancelled')),
    mt_id        bigint,
    PRIMARY KEY (broadcast_id, msisdn)
);

CREATE TABLE reminders (
    id        bigserial PRIMARY KEY,
    msisdn    text NOT NULL,
    skill     text NOT NULL REFERENCES skills (code),
    kind      text NOT NULL CHECK (kind IN ('unfinished', 'failed', 'next')),
    due_at    timestamptz NOT NULL,
    state     text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'skipped', 'cancelled')),
    mt_id     bigint,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reminders_due ON reminders (due_at) WHERE state = 'pending';

CREATE TABLE api_tokens (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    role        text NOT NULL CHECK (role IN ('admin', 'staff', 'partner', 'viewer')),
    hash        bytea NOT NULL UNIQUE,      -- SHA-256 of the token; the token itself is never stored
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
