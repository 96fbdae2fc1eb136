-- Check constraints that cost nothing to set up per statement: the state vocabularies through
-- enum types instead of long IN lists, the step limits as domains.
--
-- Why: PostgreSQL 15 rebuilds a table's CHECK constraints for every statement that writes the
-- table: ExecRelCheck reads each constraint's stored expression back from its text form and
-- plans it, on every INSERT and every UPDATE whichever columns change. The twelve-state IN
-- list of tasks and task_transitions is 2,771 characters of node text, the ten-state list of
-- the step tables 2,387, and workflow_steps had three more (about 390 each). Profiled on the
-- 2-core build machine (perf, whole machine, pgbench flipping one step between two states with
-- transition_step_state_atomic), reading those expressions back was about 20 % of the
-- server's CPU for a transition, and every step passes through four transitions.
--
-- A cast to an enum type checks the same vocabulary: the constraint's stored form shrinks to
-- 268 characters and the per-row check is one catalog-cache lookup. The state columns stay
-- text, so no function or caller changes. A value outside the vocabulary is still refused, now
-- with "invalid input value for enum tasker.task_state" naming the value. The limits
-- (max_attempts at least 1, the backoff times not negative) move to domains, whose
-- constraints are parsed once per session and checked only when a value is assigned: an
-- update that does not set them checks nothing. A domain over integer reads back as integer.

CREATE TYPE tasker.task_state AS ENUM (
    'pending', 'initializing', 'enqueuing_steps', 'steps_in_process', 'evaluating_results',
    'waiting_for_dependencies', 'waiting_for_retry', 'blocked_by_failures', 'complete', 'error',
    'cancelled', 'resolved_manually');

CREATE TYPE tasker.step_state AS ENUM (
    'pending', 'enqueued', 'in_progress', 'enqueued_for_orchestration',
    'enqueued_as_error_for_orchestration', 'waiting_for_retry', 'complete', 'error',
    'cancelled', 'resolved_manually');

ALTER TABLE tasker.tasks
    DROP CONSTRAINT tasks_current_state_check,
    ADD CONSTRAINT tasks_current_state_check
        CHECK (current_state::tasker.task_state IS NOT NULL);

ALTER TABLE tasker.task_transitions
    DROP CONSTRAINT task_transitions_to_state_check,
    ADD CONSTRAINT task_transitions_to_state_check
        CHECK (to_state::tasker.task_state IS NOT NULL);

ALTER TABLE tasker.workflow_steps
    DROP CONSTRAINT workflow_steps_current_state_check,
    ADD CONSTRAINT workflow_steps_current_state_check
        CHECK (current_state::tasker.step_state IS NOT NULL);

ALTER TABLE tasker.workflow_step_transitions
    DROP CONSTRAINT workflow_step_transitions_to_state_check,
    ADD CONSTRAINT workflow_step_transitions_to_state_check
        CHECK (to_state::tasker.step_state IS NOT NULL);

CREATE DOMAIN tasker.attempt_limit AS integer
    CONSTRAINT attempt_limit_check CHECK (VALUE >= 1);

CREATE DOMAIN tasker.milliseconds AS integer
    CONSTRAINT milliseconds_check CHECK (VALUE >= 0);

ALTER TABLE tasker.workflow_steps
    DROP CONSTRAINT workflow_steps_max_attempts_check,
    DROP CONSTRAINT workflow_steps_backoff_base_ms_check,
    DROP CONSTRAINT workflow_steps_backoff_max_ms_check,
    ALTER COLUMN max_attempts TYPE tasker.attempt_limit,
    ALTER COLUMN backoff_base_ms TYPE tasker.milliseconds,
    ALTER COLUMN backoff_max_ms TYPE tasker.milliseconds;
