-- Tasker core schema: templates, tasks, steps, the DAG and the state-transition history.
--
-- Current state. The history tables (task_transitions, workflow_step_transitions) are the
-- record; exactly one row per task or step carries most_recent = true, guarded by a partial
-- unique index. `current_state` on tasks and workflow_steps mirrors that row: it is written only
-- by the transition functions in the same statement sequence that inserts the transition, so
-- the hot queries (readiness, next ready tasks) read one row instead of joining the history.

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

CREATE TABLE tasker.tasks (
    task_uuid       uuid PRIMARY KEY DEFAULT tasker.uuid_v7(),
    named_task_uuid uuid NOT NULL REFERENCES tasker.named_tasks (named_task_uuid),
    current_state   text NOT NULL DEFAULT 'pending',
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
);

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
    current_state      text NOT NULL DEFAULT 'pending',
    attempts           integer NOT NULL DEFAULT 0,
    max_attempts       integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    retryable          boolean NOT NULL DEFAULT true,
    backoff_base_ms    integer NOT NULL DEFAULT 1000 CHECK (backoff_base_ms >= 0),
    backoff_max_ms     integer NOT NULL DEFAULT 60000 CHECK (backoff_max_ms >= 0),
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
    UNIQUE (task_uuid, name)
);

-- readiness probes only look at steps that could still become ready
CREATE INDEX workflow_steps_open_idx ON tasker.workflow_steps (task_uuid)
    WHERE current_state IN ('pending', 'waiting_for_retry');

CREATE TABLE tasker.workflow_step_edges (
    from_step_uuid uuid NOT NULL REFERENCES tasker.workflow_steps (workflow_step_uuid) ON DELETE CASCADE,
    to_step_uuid   uuid NOT NULL REFERENCES tasker.workflow_steps (workflow_step_uuid) ON DELETE CASCADE,
    name           text NOT NULL DEFAULT 'provides',
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (to_step_uuid, from_step_uuid),
    CHECK (from_step_uuid <> to_step_uuid)
);

CREATE INDEX workflow_step_edges_from_idx ON tasker.workflow_step_edges (from_step_uuid);

CREATE TABLE tasker.task_transitions (
    task_transition_uuid uuid PRIMARY KEY DEFAULT tasker.uuid_v7(),
    task_uuid            uuid NOT NULL REFERENCES tasker.tasks (task_uuid) ON DELETE CASCADE,
    from_state           text,
    to_state             text NOT NULL,
    sort_key             integer NOT NULL,
    most_recent          boolean NOT NULL,
    processor            text,
    metadata             jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at           timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX task_transitions_most_recent_idx ON tasker.task_transitions (task_uuid)
    WHERE most_recent;
CREATE UNIQUE INDEX task_transitions_sort_key_idx ON tasker.task_transitions (task_uuid, sort_key);

CREATE TABLE tasker.workflow_step_transitions (
    workflow_step_transition_uuid uuid PRIMARY KEY DEFAULT tasker.uuid_v7(),
    workflow_step_uuid            uuid NOT NULL REFERENCES tasker.workflow_steps (workflow_step_uuid) ON DELETE CASCADE,
    from_state                    text,
    to_state                      text NOT NULL,
    sort_key                      integer NOT NULL,
    most_recent                   boolean NOT NULL,
    processor                     text,
    metadata                      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at                    timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX workflow_step_transitions_most_recent_idx
    ON tasker.workflow_step_transitions (workflow_step_uuid) WHERE most_recent;
CREATE UNIQUE INDEX workflow_step_transitions_sort_key_idx
    ON tasker.workflow_step_transitions (workflow_step_uuid, sort_key);

-- The state vocabularies, enforced where the states are stored.
ALTER TABLE tasker.tasks ADD CONSTRAINT tasks_current_state_check CHECK (current_state IN (
    'pending', 'initializing', 'enqueuing_steps', 'steps_in_process', 'evaluating_results',
    'waiting_for_dependencies', 'waiting_for_retry', 'blocked_by_failures', 'complete', 'error',
    'cancelled', 'resolved_manually'));
ALTER TABLE tasker.task_transitions ADD CONSTRAINT task_transitions_to_state_check CHECK (to_state IN (
    'pending', 'initializing', 'enqueuing_steps', 'steps_in_process', 'evaluating_results',
    'waiting_for_dependencies', 'waiting_for_retry', 'blocked_by_failures', 'complete', 'error',
    'cancelled', 'resolved_manually'));
ALTER TABLE tasker.workflow_steps ADD CONSTRAINT workflow_steps_current_state_check CHECK (current_state IN (
    'pending', 'enqueued', 'in_progress', 'enqueued_for_orchestration',
    'enqueued_as_error_for_orchestration', 'waiting_for_retry', 'complete', 'error', 'cancelled',
    'resolved_manually'));
ALTER TABLE tasker.workflow_step_transitions ADD CONSTRAINT workflow_step_transitions_to_state_check CHECK (to_state IN (
    'pending', 'enqueued', 'in_progress', 'enqueued_for_orchestration',
    'enqueued_as_error_for_orchestration', 'waiting_for_retry', 'complete', 'error', 'cancelled',
    'resolved_manually'));
