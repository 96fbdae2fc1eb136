//! One named queue: send, claim with a visibility timeout, delete, archive.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sqlx::PgExecutor;

use crate::error::{DbContext, TaskerError, TaskerResult};

/// What a queue's notification channel name starts with (`tasker.queue_channel` in SQL).
pub(crate) const CHANNEL_PREFIX: &str = "tasker_queue_";

/// A queue, by name. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Queue {
    name: Arc<str>,
}

#[derive(sqlx::FromRow)]
struct RawRow {
    msg_id: i64,
    read_ct: i32,
    enqueued_at: DateTime<Utc>,
    vt: DateTime<Utc>,
    message: Value,
}

/// A claimed message.
#[derive(Debug, Clone)]
pub struct QueueMessage<T> {
    pub msg_id: i64,
    /// How many times the message has been claimed, this time included; above 1 means an
    /// earlier consumer let its visibility timeout pass.
    pub read_ct: i32,
    pub enqueued_at: DateTime<Utc>,
    /// When the message becomes visible again unless it is deleted or archived.
    pub vt: DateTime<Utc>,
    pub message: T,
}

impl Queue {
    /// A queue handle; the name must be 1 to 48 characters from `a-z`, `0-9` and `_` (it becomes
    /// part of a notification channel name).
    pub fn new(name: &str) -> TaskerResult<Self> {
        let valid = !name.is_empty()
            && name.len() <= 48
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(TaskerError::InvalidQueueName(name.to_string()));
        }
        Ok(Self { name: name.into() })
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The LISTEN/NOTIFY channel that announces new messages.
    pub fn channel(&self) -> String {
        format!("{CHANNEL_PREFIX}{}", self.name)
    }

    /// Creates the queue if it does not exist.
    pub async fn create<'e>(&self, executor: impl PgExecutor<'e>) -> TaskerResult<()> {
        sqlx::query("INSERT INTO tasker.queues (queue_name) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(self.name())
            .execute(executor)
            .await
            .db_context(format!("creating queue {}", self.name))?;
        Ok(())
    }

    /// Sends a message and notifies listeners when the surrounding transaction commits.
    pub async fn send<'e, T: Serialize>(
        &self,
        executor: impl PgExecutor<'e>,
        message: &T,
    ) -> TaskerResult<i64> {
        self.send_delayed(executor, message, Duration::ZERO).await
    }

    /// Sends a message that becomes visible after `delay`.
    pub async fn send_delayed<'e, T: Serialize>(
        &self,
        executor: impl PgExecutor<'e>,
        message: &T,
        delay: Duration,
    ) -> TaskerResult<i64> {
        let payload = self.encode(message)?;
        sqlx::query_scalar("SELECT tasker.queue_send($1, $2, $3)")
            .bind(self.name())
            .bind(payload)
            .bind(delay.as_secs_f64())
            .fetch_one(executor)
            .await
            .db_context(format!("sending to queue {}", self.name))
    }

    /// Sends several messages in one statement with a single notification.
    pub async fn send_batch<'e, T: Serialize>(
        &self,
        executor: impl PgExecutor<'e>,
        messages: &[T],
    ) -> TaskerResult<Vec<i64>> {
        let payloads = messages
            .iter()
            .map(|m| self.encode(m))
            .collect::<TaskerResult<Vec<Value>>>()?;
        sqlx::query_scalar("SELECT tasker.queue_send_batch($1, $2)")
            .bind(self.name())
            .bind(payloads)
            .fetch_all(executor)
            .await
            .db_context(format!("sending a batch to queue {}", self.name))
    }

    /// Claims up to `limit` visible messages, hiding them for `visibility_timeout`.
    pub async fn read_raw<'e>(
        &self,
        executor: impl PgExecutor<'e>,
        visibility_timeout: Duration,
        limit: i32,
    ) -> TaskerResult<Vec<QueueMessage<Value>>> {
        let rows: Vec<RawRow> = sqlx::query_as("SELECT * FROM tasker.queue_read($1, $2, $3)")
            .bind(self.name())
            .bind(visibility_timeout.as_secs_f64())
            .bind(limit)
            .fetch_all(executor)
            .await
            .db_context(format!("reading from queue {}", self.name))?;
        Ok(rows
            .into_iter()
            .map(|r| QueueMessage {
                msg_id: r.msg_id,
                read_ct: r.read_ct,
                enqueued_at: r.enqueued_at,
                vt: r.vt,
                message: r.message,
            })
            .collect())
    }

    /// Claims messages and decodes them; a message that does not decode is an error naming
    /// the queue (callers that must survive poison messages use [`Queue::read_raw`]).
    pub async fn read<'e, T: DeserializeOwned>(
        &self,
        executor: impl PgExecutor<'e>,
        visibility_timeout: Duration,
        limit: i32,
    ) -> TaskerResult<Vec<QueueMessage<T>>> {
        self.read_raw(executor, visibility_timeout, limit)
            .await?
            .into_iter()
            .map(|m| self.decode(m))
            .collect()
    }

    /// Decodes a raw message.
    pub fn decode<T: DeserializeOwned>(
        &self,
        raw: QueueMessage<Value>,
    ) -> TaskerResult<QueueMessage<T>> {
        let message = serde_json::from_value(raw.message).map_err(|source| TaskerError::Serde {
            what: format!("a message of queue {}", self.name),
            source,
        })?;
        Ok(QueueMessage {
            msg_id: raw.msg_id,
            read_ct: raw.read_ct,
            enqueued_at: raw.enqueued_at,
            vt: raw.vt,
            message,
        })
    }

    /// Deletes a message; false when it was already gone.
    pub async fn delete<'e>(
        &self,
        executor: impl PgExecutor<'e>,
        msg_id: i64,
    ) -> TaskerResult<bool> {
        let result =
            sqlx::query("DELETE FROM tasker.queue_messages WHERE queue_name = $1 AND msg_id = $2")
                .bind(self.name())
                .bind(msg_id)
                .execute(executor)
                .await
                .db_context(format!(
                    "deleting message {msg_id} from queue {}",
                    self.name
                ))?;
        Ok(result.rows_affected() == 1)
    }

    /// Moves a message to the archive table; false when it was already gone.
    pub async fn archive<'e>(
        &self,
        executor: impl PgExecutor<'e>,
        msg_id: i64,
    ) -> TaskerResult<bool> {
        sqlx::query_scalar("SELECT tasker.queue_archive_message($1, $2)")
            .bind(self.name())
            .bind(msg_id)
            .fetch_one(executor)
            .await
            .db_context(format!("archiving message {msg_id} of queue {}", self.name))
    }

    /// Hides a claimed message for another `visibility_timeout` from now (a consumer's
    /// heartbeat while it works on a long message); false when the message is gone.
    pub async fn extend_visibility<'e>(
        &self,
        executor: impl PgExecutor<'e>,
        msg_id: i64,
        visibility_timeout: Duration,
    ) -> TaskerResult<bool> {
        let result = sqlx::query(
            "UPDATE tasker.queue_messages SET vt = clock_timestamp() + make_interval(secs => $3)
              WHERE queue_name = $1 AND msg_id = $2",
        )
        .bind(self.name())
        .bind(msg_id)
        .bind(visibility_timeout.as_secs_f64())
        .execute(executor)
        .await
        .db_context(format!("extending message {msg_id} of queue {}", self.name))?;
        Ok(result.rows_affected() == 1)
    }

    /// Messages in the queue, visible or not.
    pub async fn depth<'e>(&self, executor: impl PgExecutor<'e>) -> TaskerResult<i64> {
        sqlx::query_scalar("SELECT count(*) FROM tasker.queue_messages WHERE queue_name = $1")
            .bind(self.name())
            .fetch_one(executor)
            .await
            .db_context(format!("counting messages of queue {}", self.name))
    }

    fn encode<T: Serialize>(&self, message: &T) -> TaskerResult<Value> {
        serde_json::to_value(message).map_err(|source| TaskerError::Serde {
            what: format!("a message of queue {}", self.name),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Queue;

    #[test]
    fn names_outside_the_channel_alphabet_are_rejected() {
        assert!(Queue::new("rust_samples_queue").is_ok());
        for bad in ["", "Upper", "has-dash", "has space", &"x".repeat(49)] {
            assert!(Queue::new(bad).is_err(), "{bad:?} accepted");
        }
    }
}
