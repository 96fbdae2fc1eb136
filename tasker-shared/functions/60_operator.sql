-- What an operator can do to a task: cancel it, resolve one of its steps by hand, or retry a
-- step that failed for good. Each is one call, one transaction, with the task row locked
-- first (as every path that moves a task does), and each records who asked: the transitions
-- it writes carry p_metadata (`action`, `initiator`, `reason`).
--
-- Outcomes, for the API to answer with: done, unchanged (cancelling a cancelled task),
-- no_task, no_step, wrong_state (the task or step is not in a state the action applies to;
-- task_state and step_state say which it is in).

-- The operator's moves of steps are transition_steps_atomic's compare-and-swap, from the
-- states each action applies to; the function that once moved them from any state is gone.
DROP FUNCTION IF EXISTS tasker.move_steps_by_operator(uuid[], text, text, jsonb);

-- Cancels a task: its steps that have not started (pending, enqueued, waiting_for_retry) are
-- cancelled and never start (a worker's claim of an enqueued one finds it cancelled and drops
-- the message); steps already running finish, and process_step_result records their results
-- in their history without moving anything. Cancelling a cancelled task changes nothing
-- (unchanged); a finished one (complete, error, resolved_manually) is wrong_state.
CREATE OR REPLACE FUNCTION tasker.cancel_task(p_task_uuid uuid, p_processor text, p_metadata jsonb)
RETURNS TABLE (outcome text, task_state text)
LANGUAGE plpgsql AS $$
DECLARE
    task_was text;
    waiting uuid[];
BEGIN
    SELECT t.current_state INTO task_was
      FROM tasker.tasks t WHERE t.task_uuid = p_task_uuid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no_task'::text, NULL::text;
        RETURN;
    ELSIF task_was = 'cancelled' THEN
        RETURN QUERY SELECT 'unchanged'::text, task_was;
        RETURN;
    ELSIF task_was IN ('complete', 'error', 'resolved_manually') THEN
        RETURN QUERY SELECT 'wrong_state'::text, task_was;
        RETURN;
    END IF;
    SELECT array_agg(s.workflow_step_uuid) INTO waiting
      FROM tasker.workflow_steps s
     WHERE s.task_uuid = p_task_uuid
       AND s.current_state IN ('pending', 'enqueued', 'waiting_for_retry');
    IF waiting IS NOT NULL THEN
        -- a step a worker claims meanwhile is no longer waiting: it is left to finish
        PERFORM tasker.transition_steps_atomic(
            waiting, ARRAY['pending', 'enqueued', 'waiting_for_retry'], 'cancelled',
            p_processor, p_metadata);
    END IF;
    PERFORM tasker.transition_task_state_through(
        p_task_uuid, ARRAY[task_was, 'cancelled'], p_processor, p_metadata);
    PERFORM pg_notify('tasker_task_finished', p_task_uuid::text);
    RETURN QUERY SELECT 'done'::text, 'cancelled'::text;
END
$$;

-- After an operator changed one of its steps, takes a task (locked by the caller, in
-- p_task_state) on from there as the engine would: ready steps are enqueued (a task blocked by
-- failures goes back through evaluating_results), or, with nothing ready or running, the task
-- is finalised (complete when every step is done). Returns the task's state afterwards.
CREATE OR REPLACE FUNCTION tasker.resume_task(
    p_task_uuid  uuid,
    p_task_state text,
    p_processor  text,
    p_metadata   jsonb
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    summary record;
    queue   text;
BEGIN
    SELECT * INTO summary FROM tasker.task_step_summary(p_task_uuid);
    IF summary.ready_steps IS NOT NULL THEN
        IF p_task_state = 'steps_in_process' THEN
            SELECT ns.name || '_queue' INTO queue
              FROM tasker.tasks t
              JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
              JOIN tasker.namespaces ns ON ns.namespace_uuid = nt.namespace_uuid
             WHERE t.task_uuid = p_task_uuid;
            PERFORM tasker.enqueue_steps(p_task_uuid, summary.ready_steps, queue, p_processor);
        ELSE
            IF p_task_state = 'blocked_by_failures' THEN
                PERFORM tasker.transition_task_state_through(
                    p_task_uuid,
                    ARRAY['blocked_by_failures', 'evaluating_results', 'waiting_for_dependencies'],
                    p_processor, p_metadata);
            END IF;
            -- from pending or waiting_*, the pick-up path enqueues and moves the task on
            PERFORM tasker.pick_up_task(p_task_uuid, p_processor);
        END IF;
    ELSIF summary.in_process = 0 THEN
        PERFORM tasker.finalize_locked_task(
            p_task_uuid, p_processor, p_task_state, summary.ready_steps, summary.in_process,
            summary.failed, summary.completed, summary.total, summary.retrying,
            summary.next_retry_at);
    END IF;
    RETURN (SELECT t.current_state FROM tasker.tasks t WHERE t.task_uuid = p_task_uuid);
END
$$;

-- Locks a task and its step named p_step_name for an operator action on the step. The row's
-- outcome is NULL when both exist and the task is unfinished.
CREATE OR REPLACE FUNCTION tasker.lock_step_for_operator(p_task_uuid uuid, p_step_name text)
RETURNS TABLE (outcome text, task_state text, step_uuid uuid, step_state text)
LANGUAGE plpgsql AS $$
DECLARE
    task_was   text;
    found_step uuid;
    step_was   text;
BEGIN
    SELECT t.current_state INTO task_was
      FROM tasker.tasks t WHERE t.task_uuid = p_task_uuid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no_task'::text, NULL::text, NULL::uuid, NULL::text;
        RETURN;
    END IF;
    SELECT ws.workflow_step_uuid, ws.current_state INTO found_step, step_was
      FROM tasker.workflow_steps ws
     WHERE ws.task_uuid = p_task_uuid AND ws.name = p_step_name
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no_step'::text, task_was, NULL::uuid, NULL::text;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT CASE WHEN task_was IN ('complete', 'error', 'cancelled', 'resolved_manually')
                THEN 'wrong_state' END,
           task_was, found_step, step_was;
END
$$;

-- Resolves a step by hand with p_results as its result: from pending, enqueued,
-- waiting_for_retry or error it becomes resolved_manually, its dependents see p_results as
-- its result, and the task goes on (see resume_task). A running step (its worker or the
-- orchestrator holds it) or a step already done is wrong_state.
CREATE OR REPLACE FUNCTION tasker.resolve_step(
    p_task_uuid uuid,
    p_step_name text,
    p_results   jsonb,
    p_processor text,
    p_metadata  jsonb
) RETURNS TABLE (outcome text, task_state text, step_state text)
LANGUAGE plpgsql AS $$
DECLARE
    l record;
BEGIN
    SELECT * INTO l FROM tasker.lock_step_for_operator(p_task_uuid, p_step_name);
    IF l.outcome IS NULL AND l.step_state NOT IN ('pending', 'enqueued', 'waiting_for_retry', 'error') THEN
        l.outcome := 'wrong_state';
    END IF;
    IF l.outcome IS NOT NULL THEN
        RETURN QUERY SELECT l.outcome, l.task_state, l.step_state;
        RETURN;
    END IF;
    UPDATE tasker.workflow_steps s SET results = p_results WHERE s.workflow_step_uuid = l.step_uuid;
    PERFORM tasker.transition_steps_atomic(
        ARRAY[l.step_uuid], ARRAY[l.step_state], 'resolved_manually', p_processor, p_metadata);
    RETURN QUERY SELECT 'done'::text,
                        tasker.resume_task(p_task_uuid, l.task_state, p_processor, p_metadata),
                        'resolved_manually'::text;
END
$$;

-- Retries a step that failed for good (error): it goes back to pending with a fresh attempt
-- budget (attempts from zero, so a step its template marks not retryable runs again too) and
-- the task goes on (see resume_task). Any other step state is wrong_state.
CREATE OR REPLACE FUNCTION tasker.retry_step(
    p_task_uuid uuid,
    p_step_name text,
    p_processor text,
    p_metadata  jsonb
) RETURNS TABLE (outcome text, task_state text, step_state text)
LANGUAGE plpgsql AS $$
DECLARE
    l record;
BEGIN
    SELECT * INTO l FROM tasker.lock_step_for_operator(p_task_uuid, p_step_name);
    IF l.outcome IS NULL AND l.step_state <> 'error' THEN
        l.outcome := 'wrong_state';
    END IF;
    IF l.outcome IS NOT NULL THEN
        RETURN QUERY SELECT l.outcome, l.task_state, l.step_state;
        RETURN;
    END IF;
    UPDATE tasker.workflow_steps s
       SET attempts = 0, next_retry_at = NULL
     WHERE s.workflow_step_uuid = l.step_uuid;
    PERFORM tasker.transition_steps_atomic(
        ARRAY[l.step_uuid], ARRAY['error'], 'pending', p_processor, p_metadata);
    RETURN QUERY SELECT 'done'::text,
                        tasker.resume_task(p_task_uuid, l.task_state, p_processor, p_metadata),
                        'pending'::text;
END
$$;
