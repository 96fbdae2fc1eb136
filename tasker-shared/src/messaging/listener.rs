//! Waking consumers when messages arrive: LISTEN on the queues' channels, with a fallback poll
//! that covers notifications lost while the listening connection was down.

use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;

use super::queue::CHANNEL_PREFIX;
use super::Queue;
use crate::error::{DbContext, TaskerResult};

/// Why [`QueueListener::wait`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// A message was announced on this queue's channel.
    Notified(String),
    /// The fallback interval passed without a notification.
    FallbackPoll,
}

/// A dedicated connection listening on one or more queues' channels.
pub struct QueueListener {
    listener: PgListener,
    fallback: Duration,
}

impl QueueListener {
    /// Connects and starts listening on every queue's channel.
    pub async fn connect(
        pool: &PgPool,
        queues: &[Queue],
        fallback: Duration,
    ) -> TaskerResult<Self> {
        let mut listener = PgListener::connect_with(pool)
            .await
            .db_context("opening the notification listener connection")?;
        let channels: Vec<String> = queues.iter().map(Queue::channel).collect();
        listener
            .listen_all(channels.iter().map(String::as_str))
            .await
            .db_context(format!("listening on {}", channels.join(", ")))?;
        Ok(Self { listener, fallback })
    }

    /// Waits for the next notification or the fallback interval, whichever comes first.
    pub async fn wait(&mut self) -> TaskerResult<Wake> {
        match tokio::time::timeout(self.fallback, self.listener.recv()).await {
            Ok(Ok(notification)) => Ok(Wake::Notified(queue_of(notification.channel()))),
            // PgListener reconnects by itself on the next recv; a poll covers the gap
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "notification listener lost its connection; polling");
                Ok(Wake::FallbackPoll)
            }
            Err(_elapsed) => Ok(Wake::FallbackPoll),
        }
    }

    /// Takes the notifications that are already buffered, so one read can answer a burst;
    /// returns the queues they named, each once, in the order first seen.
    pub fn drain(&mut self) -> Vec<String> {
        let mut queues: Vec<String> = Vec::new();
        while let Some(notification) = self.listener.next_buffered() {
            let queue = queue_of(notification.channel());
            if !queues.contains(&queue) {
                queues.push(queue);
            }
        }
        queues
    }
}

/// The queue a notification channel belongs to (the inverse of [`Queue::channel`]).
fn queue_of(channel: &str) -> String {
    channel.trim_start_matches(CHANNEL_PREFIX).to_string()
}
