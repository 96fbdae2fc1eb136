-- Round-trip savers for the step execution path: batch step transitions for the enqueuer,
-- and one call each for a worker's claim and its result submission.

-- Compare-and-swap for many steps at once: moves every listed step that is in one of
-- p_from_states to p_to_state and records one transition each. Returns the ids it moved;
-- steps in any other state (claimed by a concurrent writer) are left alone.
CREATE FUNCTION tasker.transition_steps_atomic(
    p_step_uuids  uuid[],
    p_from_states text[],
    p_to_state    text,
    p_processor   text,
    p_metadata    jsonb DEFAULT '{}'::jsonb
) RETURNS SETOF uuid
LANGUAGE plpgsql AS $$
DECLARE
    moved_uuids    uuid[];
    previous_states text[];
BEGIN
    -- lock in a fixed order so two batch callers cannot deadlock on each other
    WITH locked AS (
        SELECT s.workflow_step_uuid, s.current_state
          FROM tasker.workflow_steps s
         WHERE s.workflow_step_uuid = ANY (p_step_uuids)
           AND s.current_state = ANY (p_from_states)
         ORDER BY s.workflow_step_uuid
           FOR UPDATE
    ), moved AS (
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
    )
    SELECT array_agg(workflow_step_uuid), array_agg(previous)
      INTO moved_uuids, previous_states
      FROM moved;
    IF moved_uuids IS NULL THEN
        RETURN;
    END IF;

    UPDATE tasker.workflow_step_transitions
       SET most_recent = false
     WHERE workflow_step_uuid = ANY (moved_uuids) AND most_recent;

    INSERT INTO tasker.workflow_step_transitions
        (workflow_step_uuid, from_state, to_state, sort_key, most_recent, processor, metadata)
    SELECT m.step_uuid, m.previous, p_to_state,
           coalesce((SELECT max(t.sort_key) FROM tasker.workflow_step_transitions t
                      WHERE t.workflow_step_uuid = m.step_uuid), 0) + 1,
           true, p_processor, coalesce(p_metadata, '{}'::jsonb)
      FROM unnest(moved_uuids, previous_states) AS m(step_uuid, previous);

    RETURN QUERY SELECT unnest(moved_uuids);
END
$$;

-- A worker's claim: enqueued -> in_progress (or in_progress -> in_progress when the previous
-- claimant's visibility timeout ran out), one more attempt, and everything the handler needs:
-- the step, the task's context and every ancestor's results by step name. No row means the
-- step is not claimable (a duplicate message, or already taken).
CREATE FUNCTION tasker.claim_step_for_execution(
    p_step_uuid     uuid,
    p_worker        text,
    p_allow_reclaim boolean
) RETURNS TABLE (
    task_uuid          uuid,
    step_name          text,
    handler            text,
    configuration      jsonb,
    attempts           integer,
    timeout_ms         integer,
    task_context       jsonb,
    dependency_results jsonb
)
LANGUAGE plpgsql AS $$
DECLARE
    previous text;
BEGIN
    previous := tasker.transition_step_state_atomic(
        p_step_uuid,
        CASE WHEN p_allow_reclaim THEN ARRAY['enqueued', 'in_progress'] ELSE ARRAY['enqueued'] END,
        'in_progress',
        p_worker,
        jsonb_build_object('worker', p_worker));
    IF previous IS NULL THEN
        RETURN;
    END IF;
    UPDATE tasker.workflow_steps
       SET attempts = workflow_steps.attempts + 1, last_attempted_at = now()
     WHERE workflow_step_uuid = p_step_uuid;
    RETURN QUERY
    SELECT s.task_uuid, s.name, s.handler, s.configuration, s.attempts, s.timeout_ms, t.context,
           coalesce((SELECT jsonb_object_agg(d.name, d.results)
                       FROM tasker.get_step_transitive_dependencies(p_step_uuid) d), '{}'::jsonb)
      FROM tasker.workflow_steps s
      JOIN tasker.tasks t ON t.task_uuid = s.task_uuid
     WHERE s.workflow_step_uuid = p_step_uuid;
END
$$;

-- A worker's result: stores it, moves the step to enqueued_for_orchestration (or
-- enqueued_as_error_for_orchestration), sends p_result_message to the results queue and
-- acknowledges the step's message, atomically. False (and nothing written) when the step is
-- no longer in progress: another worker re-claimed it, and its result is the one that counts.
CREATE FUNCTION tasker.submit_step_result(
    p_step_uuid      uuid,
    p_worker         text,
    p_success        boolean,
    p_results        jsonb,
    p_error          jsonb,
    p_result_message jsonb,
    p_step_queue     text,
    p_msg_id         bigint
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    previous text;
BEGIN
    previous := tasker.transition_step_state_atomic(
        p_step_uuid,
        ARRAY['in_progress'],
        CASE WHEN p_success THEN 'enqueued_for_orchestration'
             ELSE 'enqueued_as_error_for_orchestration' END,
        p_worker,
        '{}'::jsonb);
    IF previous IS NULL THEN
        RETURN false;
    END IF;
    UPDATE tasker.workflow_steps
       SET results = CASE WHEN p_success THEN p_results ELSE results END,
           last_error = CASE WHEN p_success THEN NULL ELSE p_error END
     WHERE workflow_step_uuid = p_step_uuid;
    PERFORM tasker.queue_send('orchestration_step_results', p_result_message, 0);
    DELETE FROM tasker.queue_messages WHERE queue_name = p_step_queue AND msg_id = p_msg_id;
    RETURN true;
END
$$;

INSERT INTO tasker.queues (queue_name) VALUES ('orchestration_step_results') ON CONFLICT DO NOTHING;
