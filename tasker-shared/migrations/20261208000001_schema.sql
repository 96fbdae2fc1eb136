-- Tasker's schema: templates, tasks, steps, the DAG, the state-transition history and the
-- durable queues, in the form in force. The SQL functions that work on these tables are not
-- here: each is defined once in tasker-shared/functions/, which `tasker migrate` applies after
-- this file and again whenever a file there changes (tasker-shared/functions/README.md says
-- how a change to the schema or to a function is made).
--
-- Current state. The history tables (task_transitions, workflow_step_transitions) are the
-- record; exactly one row per task or step carries most_recent = true, guarded by a partial
-- unique index. `current_state` on tasks and workflow_steps mirrors that row: it is written only
-- by the transition functions in the same statement sequence that inserts the transition, so
-- the hot queries (readiness, next ready tasks) read one row instead of joining the history.
--
-- Check constraints cost nothing to set up per statement: PostgreSQL 15 reads every CHECK
-- constraint of a table back from its text form and plans it for every statement that writes
-- the table, and the twelve-state IN lists of the state columns were about a fifth of the
-- server's CPU for a step transition (perf on the 2-core build machine). The state
-- vocabularies are enum types, checked by a cast (one catalog-cache lookup; the columns stay
-- text), and the step limits are domains, checked only when a value is assigned.
--
-- The tables that churn (every message is inserted and deleted; every step is updated five
-- times) are vacuumed after a fixed number of dead rows rather than a fraction of the table,
-- so a small busy table does not bloat to many times its live size between autovacuum runs
-- (8,558 dead messages beside 12 live ones were measured under the throughput benchmark).

CREATE SCHEMA IF NOT EXISTS tasker;

-- Time-ordered UUIDs (version 7): 48 bits of Unix milliseconds, then random bits.
-- PostgreSQL 15 has no built-in generator; Rust code supplies its own v7 ids and this is the
-- default for rows created in SQL (every transition row). A single SQL expression rather than
-- PL/pgSQL, so the planner inlines it into the INSERT instead of calling a function per row.
-- The high nibble of byte 6 is the version; gen_random_uuid already set the RFC variant bits.
CREATE FUNCTION tasker.uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE AS $$
    SELECT encode(
               set_byte(
                   overlay(uuid_send(gen_random_uuid())
                           PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3 FOR 6)
                           FROM 1 FOR 6),
                   6,
                   (floor(random() * 16)::int) | 112),
               'hex')::uuid
$$;

CREATE TYPE tasker.task_state AS ENUM (
    'pending', 'initializing', 'enqueuing_steps', 'steps_in_process', 'evaluating_results',
    'waiting_for_dependencies', 'waiting_for_retry', 'blocked_by_failures', 'complete', 'error',
    'cancelled', 'resolved_manually');

CREATE TYPE tasker.step_state AS ENUM (
    'pending', 'enqueued', 'in_progress', 'enqueued_for_orchestration',
    'enqueued_as_error_for_orchestration', 'waiting_for_retry', 'complete', 'error',
    'cancelled', 'resolved_manually');

CREATE DOMAIN tasker.attempt_limit AS integer
    CONSTRAINT attempt_limit_check CHECK (VALUE >= 1);

CREATE DOMAIN tasker.milliseconds AS integer
    CONSTRAINT milliseconds_check CHECK (VALUE >= 0);

-- --- Templates -------------------------------------------------------------------------

CREATE TABLE tasker.namespaces (
    namespace_uuid uuid PRIMARY KEY DEFAULT tasker.uuid_v7(),
    name           text NOT NULL UNIQUE,
    description    text,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tasker.named_tasks (
    named_task_uuid uuid PRIMARY KEY DEFAULT tasker.uuid_v7(),
    namespace_uuid  uuid NOT NULL REFERENCES tasker.namespaces (namespace_uuid),
    name            text NOT NULL,
    version         text NOT NULL,
    description     text,
    -- the whole validated template (steps, handlers, dependencies, retry policies)
    configuration   jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (namespace_uuid, name, version)
);

-- --- Tasks and their steps ------------------------------------------------------------

CREATE TABLE tasker.tasks (
    task_uuid       uuid PRIMARY KEY DEFAULT tasker.uuid_v7(),
    named_task_uuid uuid NOT NULL REFERENCES tasker.named_tasks (named_task_uuid),
    current_state   text NOT NULL DEFAULT 'pending'
                    CONSTRAINT tasks_current_state_check
                    CHECK (current_state::tasker.task_state IS NOT NULL),
    context         jsonb NOT NULL DEFAULT '{}'::jsonb,
    priority        integer NOT NULL DEFAULT 0,
    -- hash of (template, context, initiator): requests with the same identity inside the
    -- de-duplication window resolve to the existing task
    identity_hash   text NOT NULL,
    initiator       text,
    source_system   text,
    reason          text,
    tags            jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz
) WITH (
    autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0);

CREATE INDEX tasks_identity_hash_idx ON tasker.tasks (identity_hash, created_at DESC);
CREATE INDEX tasks_named_task_idx ON tasker.tasks (named_task_uuid);
CREATE INDEX tasks_state_created_idx ON tasker.tasks (current_state, created_at DESC);
-- get_next_ready_tasks walks this index in priority order and stops at its limit
CREATE INDEX tasks_ready_candidates_idx ON tasker.tasks (priority DESC, created_at, task_uuid)
    WHERE current_state IN ('pending', 'waiting_for_dependencies', 'waiting_for_retry');

CREATE TABLE tasker.workflow_steps (
    workflow_step_uuid uuid PRIMARY KEY DEFAULT tasker.uuid_v7(),
    task_uuid          uuid NOT NULL REFERENCES tasker.tasks (task_uuid) ON DELETE CASCADE,
    name               text NOT NULL,
    handler            text NOT NULL,
    -- the step's own configuration from the template, handed to its handler
    configuration      jsonb NOT NULL DEFAULT '{}'::jsonb,
    current_state      text NOT NULL DEFAULT 'pending'
                       CONSTRAINT workflow_steps_current_state_check
                       CHECK (current_state::tasker.step_state IS NOT NULL),
    attempts           integer NOT NULL DEFAULT 0,
    max_attempts       tasker.attempt_limit NOT NULL DEFAULT 3,
    retryable          boolean NOT NULL DEFAULT true,
    backoff_base_ms    tasker.milliseconds NOT NULL DEFAULT 1000,
    backoff_max_ms     tasker.milliseconds NOT NULL DEFAULT 60000,
    timeout_ms         integer,
    in_process         boolean NOT NULL DEFAULT false,
    processed          boolean NOT NULL DEFAULT false,
    results            jsonb,
    last_error         jsonb,
    last_attempted_at  timestamptz,
    next_retry_at      timestamptz,
    processed_at       timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    -- how many of the step's parents are not finished (finished: complete or
    -- resolved_manually), kept by the triggers of functions/20_readiness.sql: readiness is a
    -- column test instead of a probe of every parent
    unfinished_parents integer NOT NULL DEFAULT 0,
    UNIQUE (task_uuid, name)
) WITH (
    autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.05, autovacuum_analyze_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0);

-- The open steps that wait for nothing but, at most, their retry time: what a ready-step probe
-- looks for.
CREATE INDEX workflow_steps_unblocked_idx ON tasker.workflow_steps (task_uuid)
    WHERE current_state IN ('pending', 'waiting_for_retry') AND unfinished_parents = 0;

CREATE TABLE tasker.workflow_step_edges (
    from_step_uuid uuid NOT NULL REFERENCES tasker.workflow_steps (workflow_step_uuid) ON DELETE CASCADE,
    to_step_uuid   uuid NOT NULL REFERENCES tasker.workflow_steps (workflow_step_uuid) ON DELETE CASCADE,
    name           text NOT NULL DEFAULT 'provides',
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (to_step_uuid, from_step_uuid),
    CHECK (from_step_uuid <> to_step_uuid)
);

CREATE INDEX workflow_step_edges_from_idx ON tasker.workflow_step_edges (from_step_uuid);

-- --- History ---------------------------------------------------------------------------

CREATE TABLE tasker.task_transitions (
    task_transition_uuid uuid PRIMARY KEY DEFAULT tasker.uuid_v7(),
    task_uuid            uuid NOT NULL REFERENCES tasker.tasks (task_uuid) ON DELETE CASCADE,
    from_state           text,
    to_state             text NOT NULL
                         CONSTRAINT task_transitions_to_state_check
                         CHECK (to_state::tasker.task_state IS NOT NULL),
    sort_key             integer NOT NULL,
    most_recent          boolean NOT NULL,
    processor            text,
    metadata             jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at           timestamptz NOT NULL DEFAULT now()
) WITH (
    autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0);

CREATE UNIQUE INDEX task_transitions_most_recent_idx ON tasker.task_transitions (task_uuid)
    WHERE most_recent;
CREATE UNIQUE INDEX task_transitions_sort_key_idx ON tasker.task_transitions (task_uuid, sort_key);

CREATE TABLE tasker.workflow_step_transitions (
    workflow_step_transition_uuid uuid PRIMARY KEY DEFAULT tasker.uuid_v7(),
    workflow_step_uuid            uuid NOT NULL REFERENCES tasker.workflow_steps (workflow_step_uuid) ON DELETE CASCADE,
    from_state                    text,
    to_state                      text NOT NULL
                                  CONSTRAINT workflow_step_transitions_to_state_check
                                  CHECK (to_state::tasker.step_state IS NOT NULL),
    sort_key                      integer NOT NULL,
    most_recent                   boolean NOT NULL,
    processor                     text,
    metadata                      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at                    timestamptz NOT NULL DEFAULT now()
) WITH (
    autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0);

CREATE UNIQUE INDEX workflow_step_transitions_most_recent_idx
    ON tasker.workflow_step_transitions (workflow_step_uuid) WHERE most_recent;
CREATE UNIQUE INDEX workflow_step_transitions_sort_key_idx
    ON tasker.workflow_step_transitions (workflow_step_uuid, sort_key);

-- --- Queues ----------------------------------------------------------------------------
--
-- One table holds every queue's live messages; a reader claims messages with
-- FOR UPDATE SKIP LOCKED and hides them for a visibility timeout, so a consumer that dies
-- mid-message loses nothing: the message becomes visible again when its timeout passes.
-- Sending also raises a notification on the queue's channel in the same transaction, so a
-- listener wakes when the message commits, not on its next poll.

CREATE TABLE tasker.queues (
    queue_name text PRIMARY KEY CHECK (queue_name ~ '^[a-z0-9_]{1,48}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tasker.queue_messages (
    msg_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue_name  text NOT NULL REFERENCES tasker.queues (queue_name),
    read_ct     integer NOT NULL DEFAULT 0,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    vt          timestamptz NOT NULL DEFAULT now(),
    message     jsonb NOT NULL
) WITH (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 500,
    autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 500,
    autovacuum_vacuum_cost_delay = 0);

-- Readers take the oldest visible messages: walking this index in msg_id order and skipping
-- the few invisible (in-flight) ones stays cheap however large a backlog grows, where an index
-- led by vt would have to sort every visible message to find the oldest.
CREATE INDEX queue_messages_fifo_idx ON tasker.queue_messages (queue_name, msg_id);

CREATE TABLE tasker.queue_archive (
    msg_id      bigint PRIMARY KEY,
    queue_name  text NOT NULL,
    read_ct     integer NOT NULL,
    enqueued_at timestamptz NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now(),
    message     jsonb NOT NULL
);

CREATE INDEX queue_archive_queue_idx ON tasker.queue_archive (queue_name, archived_at);

-- Where workers send step results for the orchestrators.
INSERT INTO tasker.queues (queue_name) VALUES ('orchestration_step_results');

-- --- Bookkeeping -----------------------------------------------------------------------

-- Which version of each function file (tasker-shared/functions/) this database has: its
-- SHA-256 when it was last applied. `tasker migrate` applies a file again when it changed.
CREATE TABLE tasker.function_files (
    file       text PRIMARY KEY,
    sha256     text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
