-- The worker's path: claim steps with everything their handlers need, and hand results
-- back to orchestration.

-- A worker's claim: enqueued -> in_progress (or in_progress -> in_progress when the previous
-- claimant's visibility timeout ran out), one more attempt, and everything the handler needs:
-- the step, the task's context and every ancestor's results by step name. No row means the
-- step is not claimable (a duplicate message, or already taken).
CREATE OR REPLACE FUNCTION tasker.claim_step_for_execution(
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
BEGIN
    RETURN QUERY
    WITH old AS (
        SELECT s.workflow_step_uuid, s.current_state
          FROM tasker.workflow_steps s
         WHERE s.workflow_step_uuid = p_step_uuid
           AND (s.current_state = 'enqueued' OR (p_allow_reclaim AND s.current_state = 'in_progress'))
           FOR UPDATE
    ), updated AS (
        UPDATE tasker.workflow_steps s
           SET current_state = 'in_progress',
               in_process = true,
               processed = false,
               attempts = s.attempts + 1,
               last_attempted_at = now(),
               updated_at = now()
          FROM old
         WHERE s.workflow_step_uuid = old.workflow_step_uuid
        RETURNING s.task_uuid, s.name, s.handler, s.configuration, s.attempts, s.timeout_ms,
                  old.current_state AS previous
    ), retired AS (
        UPDATE tasker.workflow_step_transitions t
           SET most_recent = false
         WHERE t.workflow_step_uuid = p_step_uuid AND t.most_recent AND EXISTS (SELECT 1 FROM updated)
        RETURNING t.sort_key
    ), recorded AS (
        INSERT INTO tasker.workflow_step_transitions
            (workflow_step_uuid, from_state, to_state, sort_key, most_recent, processor, metadata)
        SELECT p_step_uuid, u.previous, 'in_progress',
               coalesce((SELECT max(r.sort_key) FROM retired r), 0) + 1, true,
               p_worker, jsonb_build_object('worker', p_worker)
          FROM updated u
    )
    SELECT u.task_uuid, u.name, u.handler, u.configuration, u.attempts, u.timeout_ms, t.context,
           coalesce((SELECT jsonb_object_agg(d.name, d.results)
                       FROM tasker.get_step_transitive_dependencies(p_step_uuid) d), '{}'::jsonb)
      FROM updated u
      JOIN tasker.tasks t ON t.task_uuid = u.task_uuid;
END
$$;

-- A worker's read and claim in one call: takes up to p_limit visible messages from the queues
-- p_queues, in that order (hiding them for p_vt_seconds), and claims each one's step as
-- claim_step_for_execution does, returning the claimed steps with their messages. A message
-- whose step is not claimable (a duplicate, or a step already finished) is deleted; one that
-- names no step is archived.
CREATE OR REPLACE FUNCTION tasker.claim_next_steps(
    p_queues     text[],
    p_vt_seconds double precision,
    p_limit      integer,
    p_worker     text
) RETURNS TABLE (
    queue_name         text,
    msg_id             bigint,
    read_ct            integer,
    workflow_step_uuid uuid,
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
#variable_conflict use_column
DECLARE
    q      text;
    m      record;
    c      record;
    step   uuid;
    taken  integer := 0;
    wanted integer;
    seen   integer;
BEGIN
    FOREACH q IN ARRAY coalesce(p_queues, '{}') LOOP
        LOOP
            wanted := p_limit - taken;
            EXIT WHEN wanted <= 0;
            seen := 0;
            FOR m IN SELECT * FROM tasker.queue_read(q, p_vt_seconds, wanted) LOOP
                seen := seen + 1;
                IF coalesce(m.message ->> 'workflow_step_uuid', '') !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
                    PERFORM tasker.queue_archive_message(q, m.msg_id);
                    CONTINUE;
                END IF;
                step := (m.message ->> 'workflow_step_uuid')::uuid;
                SELECT * INTO c FROM tasker.claim_step_for_execution(step, p_worker, m.read_ct > 1);
                IF c.task_uuid IS NULL THEN
                    DELETE FROM tasker.queue_messages qm WHERE qm.queue_name = q AND qm.msg_id = m.msg_id;
                    CONTINUE;
                END IF;
                taken := taken + 1;
                queue_name := q;
                msg_id := m.msg_id;
                read_ct := m.read_ct;
                workflow_step_uuid := step;
                task_uuid := c.task_uuid;
                step_name := c.step_name;
                handler := c.handler;
                configuration := c.configuration;
                attempts := c.attempts;
                timeout_ms := c.timeout_ms;
                task_context := c.task_context;
                dependency_results := c.dependency_results;
                RETURN NEXT;
            END LOOP;
            -- a short read: this queue has nothing more visible
            EXIT WHEN seen < wanted;
        END LOOP;
    END LOOP;
END
$$;

-- A worker's result: stores it, moves the step to enqueued_for_orchestration (or
-- enqueued_as_error_for_orchestration), sends p_result_message to the results queue and
-- acknowledges the step's message, in one statement. False (and nothing written) when the
-- step is no longer in progress: another worker re-claimed it, and its result is the one that
-- counts. The step row is written without a locking read first (the UPDATE re-checks the
-- state on the row it locks).
CREATE OR REPLACE FUNCTION tasker.submit_step_result(
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
    new_id bigint;
BEGIN
    -- only in_progress can be left here, so the state being left needs no locking read
    -- first (the UPDATE re-checks it on the row it locks, after any concurrent writer)
    WITH updated AS (
        UPDATE tasker.workflow_steps s
           SET current_state = CASE WHEN p_success THEN 'enqueued_for_orchestration'
                                    ELSE 'enqueued_as_error_for_orchestration' END,
               in_process = true,
               processed = false,
               results = CASE WHEN p_success THEN p_results ELSE s.results END,
               last_error = CASE WHEN p_success THEN NULL ELSE p_error END,
               updated_at = now()
         WHERE s.workflow_step_uuid = p_step_uuid AND s.current_state = 'in_progress'
        RETURNING s.current_state AS target, 'in_progress'::text AS previous
    ), retired AS (
        UPDATE tasker.workflow_step_transitions t
           SET most_recent = false
         WHERE t.workflow_step_uuid = p_step_uuid AND t.most_recent AND EXISTS (SELECT 1 FROM updated)
        RETURNING t.sort_key
    ), recorded AS (
        INSERT INTO tasker.workflow_step_transitions
            (workflow_step_uuid, from_state, to_state, sort_key, most_recent, processor, metadata)
        SELECT p_step_uuid, u.previous, u.target,
               coalesce((SELECT max(r.sort_key) FROM retired r), 0) + 1, true,
               p_worker, '{}'::jsonb
          FROM updated u
    ), sent AS (
        INSERT INTO tasker.queue_messages (queue_name, vt, message)
        SELECT 'orchestration_step_results', clock_timestamp(), p_result_message
          FROM updated
        RETURNING msg_id
    ), acknowledged AS (
        DELETE FROM tasker.queue_messages q
         WHERE q.queue_name = p_step_queue AND q.msg_id = p_msg_id AND EXISTS (SELECT 1 FROM updated)
    )
    SELECT s.msg_id INTO new_id FROM sent s;
    IF new_id IS NULL THEN
        RETURN false;
    END IF;
    -- an expression, not a query: PL/pgSQL evaluates it without starting an executor
    PERFORM pg_notify(tasker.queue_channel('orchestration_step_results'), new_id::text);
    RETURN true;
END
$$;
