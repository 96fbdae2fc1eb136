-- State transitions: compare-and-swap moves of a task or of steps, each recording its
-- history row (see the schema's note on current state and history).
--
-- The batch step transition runs with sequential and bitmap scans off: planned from the
-- statistics of tables full of dead rows (tasks created and deleted in a loop, or a busy
-- installation with a retention job), the planner preferred hashing the whole steps table to
-- a few key probes, and the foreign-key checks its history inserts fire became sequential
-- scans; with the settings, each is a primary-key probe. They apply while the function runs.

-- Compare-and-swap on a task's current state. Moves the task from p_from_state to p_to_state
-- and records the transition; returns false, changing nothing, when the task is not in
-- p_from_state (another writer got there first). Concurrent callers serialise on the task row:
-- the loser re-reads the row after the winner commits and sees the new state.
CREATE OR REPLACE FUNCTION tasker.transition_task_state_atomic(
    p_task_uuid  uuid,
    p_from_state text,
    p_to_state   text,
    p_processor  text,
    p_metadata   jsonb DEFAULT '{}'::jsonb
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    moved boolean;
BEGIN
    WITH updated AS (
        UPDATE tasker.tasks t
           SET current_state = p_to_state,
               updated_at = now(),
               completed_at = CASE WHEN p_to_state IN ('complete', 'error', 'cancelled', 'resolved_manually')
                                   THEN now() ELSE t.completed_at END
         WHERE t.task_uuid = p_task_uuid AND t.current_state = p_from_state
        RETURNING t.task_uuid
    ), retired AS (
        UPDATE tasker.task_transitions tt
           SET most_recent = false
         WHERE tt.task_uuid = p_task_uuid AND tt.most_recent AND EXISTS (SELECT 1 FROM updated)
        RETURNING tt.sort_key
    )
    INSERT INTO tasker.task_transitions
        (task_uuid, from_state, to_state, sort_key, most_recent, processor, metadata)
    SELECT u.task_uuid, p_from_state, p_to_state,
           coalesce((SELECT max(r.sort_key) FROM retired r), 0) + 1, true,
           p_processor, coalesce(p_metadata, '{}'::jsonb)
      FROM updated u
    RETURNING true INTO moved;
    RETURN coalesce(moved, false);
END
$$;

-- The same compare-and-swap for a workflow step; p_from_states lists the states the caller
-- accepts as a starting point (a retry, for instance, may start from pending or
-- waiting_for_retry).
CREATE OR REPLACE FUNCTION tasker.transition_step_state_atomic(
    p_step_uuid   uuid,
    p_from_states text[],
    p_to_state    text,
    p_processor   text,
    p_metadata    jsonb DEFAULT '{}'::jsonb
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    previous_state text;
BEGIN
    -- the FOR UPDATE read captures the state being left; a concurrent writer's change is
    -- re-checked against p_from_states after its commit (so exactly one CAS wins)
    WITH old AS (
        SELECT s.workflow_step_uuid, s.current_state
          FROM tasker.workflow_steps s
         WHERE s.workflow_step_uuid = p_step_uuid AND s.current_state = ANY (p_from_states)
           FOR UPDATE
    ), updated AS (
        UPDATE tasker.workflow_steps s
           SET current_state = p_to_state,
               updated_at = now(),
               in_process = p_to_state IN ('enqueued', 'in_progress', 'enqueued_for_orchestration',
                                           'enqueued_as_error_for_orchestration'),
               processed = p_to_state IN ('complete', 'resolved_manually'),
               processed_at = CASE WHEN p_to_state IN ('complete', 'resolved_manually') THEN now()
                                   ELSE s.processed_at END
          FROM old
         WHERE s.workflow_step_uuid = old.workflow_step_uuid
        RETURNING old.current_state AS previous
    ), retired AS (
        UPDATE tasker.workflow_step_transitions t
           SET most_recent = false
         WHERE t.workflow_step_uuid = p_step_uuid AND t.most_recent AND EXISTS (SELECT 1 FROM updated)
        RETURNING t.sort_key
    )
    INSERT INTO tasker.workflow_step_transitions
        (workflow_step_uuid, from_state, to_state, sort_key, most_recent, processor, metadata)
    SELECT p_step_uuid, u.previous, p_to_state,
           coalesce((SELECT max(r.sort_key) FROM retired r), 0) + 1, true,
           p_processor, coalesce(p_metadata, '{}'::jsonb)
      FROM updated u
    RETURNING from_state INTO previous_state;
    RETURN previous_state;
END
$$;

-- Compare-and-swap for many steps at once: moves every listed step that is in one of
-- p_from_states to p_to_state and records one transition each. Returns the ids it moved;
-- steps in any other state (claimed by a concurrent writer) are left alone. Key probes only
-- (see the note at the top of this file).
CREATE OR REPLACE FUNCTION tasker.transition_steps_atomic(
    p_step_uuids  uuid[],
    p_from_states text[],
    p_to_state    text,
    p_processor   text,
    p_metadata    jsonb DEFAULT '{}'::jsonb
) RETURNS SETOF uuid
LANGUAGE plpgsql
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
BEGIN
    -- locks in a fixed order so two batch callers cannot deadlock on each other
    RETURN QUERY
    WITH locked AS (
        SELECT s.workflow_step_uuid, s.current_state
          FROM tasker.workflow_steps s
         WHERE s.workflow_step_uuid = ANY (p_step_uuids)
           AND s.current_state = ANY (p_from_states)
         ORDER BY s.workflow_step_uuid
           FOR UPDATE
    ), updated AS (
        UPDATE tasker.workflow_steps s
           SET current_state = p_to_state,
               updated_at = now(),
               in_process = p_to_state IN ('enqueued', 'in_progress', 'enqueued_for_orchestration',
                                           'enqueued_as_error_for_orchestration'),
               processed = p_to_state IN ('complete', 'resolved_manually'),
               processed_at = CASE WHEN p_to_state IN ('complete', 'resolved_manually') THEN now()
                                   ELSE s.processed_at END
          FROM locked
         WHERE s.workflow_step_uuid = locked.workflow_step_uuid
        RETURNING s.workflow_step_uuid, locked.current_state AS previous
    ), retired AS (
        UPDATE tasker.workflow_step_transitions t
           SET most_recent = false
          FROM updated u
         WHERE t.workflow_step_uuid = u.workflow_step_uuid AND t.most_recent
        RETURNING t.workflow_step_uuid, t.sort_key
    ), inserted AS (
        INSERT INTO tasker.workflow_step_transitions
            (workflow_step_uuid, from_state, to_state, sort_key, most_recent, processor, metadata)
        SELECT u.workflow_step_uuid, u.previous, p_to_state, coalesce(r.sort_key, 0) + 1, true,
               p_processor, coalesce(p_metadata, '{}'::jsonb)
          FROM updated u
          LEFT JOIN retired r ON r.workflow_step_uuid = u.workflow_step_uuid
        RETURNING workflow_step_transitions.workflow_step_uuid
    )
    SELECT i.workflow_step_uuid FROM inserted i;
END
$$;

-- Moves a task through p_states (p_states[1] is the state it must be in now), recording one
-- history row per step of the way, each with p_metadata (an operator's action records who
-- asked; the engine's own moves leave it empty); the last is the most recent. False when the
-- task is not in p_states[1]. One statement for what would be a call of
-- transition_task_state_atomic per state: the task row is locked for the whole call, so no
-- reader sees the states between.
DROP FUNCTION IF EXISTS tasker.transition_task_state_through(uuid, text[], text);
CREATE OR REPLACE FUNCTION tasker.transition_task_state_through(
    p_task_uuid uuid,
    p_states    text[],
    p_processor text,
    p_metadata  jsonb DEFAULT '{}'::jsonb
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    last_state text := p_states[cardinality(p_states)];
    moved      boolean;
BEGIN
    IF coalesce(cardinality(p_states), 0) < 2 THEN
        RAISE EXCEPTION 'transition_task_state_through needs a from state and at least one to state, got %',
            p_states USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH updated AS (
        UPDATE tasker.tasks t
           SET current_state = last_state,
               updated_at = now(),
               completed_at = CASE WHEN last_state IN ('complete', 'error', 'cancelled', 'resolved_manually')
                                   THEN now() ELSE t.completed_at END
         WHERE t.task_uuid = p_task_uuid AND t.current_state = p_states[1]
        RETURNING t.task_uuid
    ), retired AS (
        UPDATE tasker.task_transitions tt
           SET most_recent = false
         WHERE tt.task_uuid = p_task_uuid AND tt.most_recent AND EXISTS (SELECT 1 FROM updated)
        RETURNING tt.sort_key
    ), recorded AS (
        INSERT INTO tasker.task_transitions
            (task_uuid, from_state, to_state, sort_key, most_recent, processor, metadata)
        SELECT u.task_uuid, p_states[i - 1], p_states[i],
               coalesce((SELECT max(r.sort_key) FROM retired r), 0) + i - 1,
               i = cardinality(p_states), p_processor, coalesce(p_metadata, '{}'::jsonb)
          FROM updated u, generate_subscripts(p_states, 1) AS i
         WHERE i > 1
         ORDER BY i
        RETURNING 1
    )
    SELECT count(*) > 0 INTO moved FROM recorded;
    RETURN moved;
END
$$;
