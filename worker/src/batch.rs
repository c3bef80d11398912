//! Gathering deliveries into batches: up to `max` messages, or whatever arrived within `wait`
//! of the first one, whichever comes first.

use std::time::Duration;

use futures::{Stream, StreamExt};
use lapin::message::Delivery;
use tokio_util::sync::CancellationToken;

/// What gathering produced.
#[derive(Debug)]
pub enum Gathered {
    /// At least one delivery.
    Batch(Vec<Delivery>),
    /// Shutdown was requested before any delivery arrived.
    Stopped,
    /// The consumer ended (cancelled by the server) or failed: reconnect.
    Ended(Option<lapin::Error>),
}

/// Waits for the first delivery, then gathers more until the batch is full or `wait` has passed.
/// A shutdown request ends gathering early; what was gathered is still returned so it can be
/// processed and acked before exit. A consumer error after the first delivery ends the batch
/// early too (the error will surface again on the next call).
pub async fn gather<S>(
    consumer: &mut S,
    max: usize,
    wait: Duration,
    stop: &CancellationToken,
) -> Gathered
where
    S: Stream<Item = lapin::Result<Delivery>> + Unpin,
{
    let first = tokio::select! {
        biased;
        () = stop.cancelled() => return Gathered::Stopped,
        next = consumer.next() => next,
    };
    let first = match first {
        Some(Ok(delivery)) => delivery,
        Some(Err(error)) => return Gathered::Ended(Some(error)),
        None => return Gathered::Ended(None),
    };
    let mut batch = Vec::with_capacity(max.max(1));
    batch.push(first);
    let deadline = tokio::time::Instant::now() + wait;
    while batch.len() < max {
        let next = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = tokio::time::sleep_until(deadline) => break,
            next = consumer.next() => next,
        };
        match next {
            Some(Ok(delivery)) => batch.push(delivery),
            _ => break,
        }
    }
    Gathered::Batch(batch)
}

#[cfg(test)]
mod tests {
    use futures::stream;

    use super::*;

    fn delivery(tag: u64) -> lapin::Result<Delivery> {
        Ok(Delivery::mock(
            tag,
            "x".into(),
            "k".into(),
            false,
            Vec::new(),
        ))
    }

    #[tokio::test]
    async fn a_full_batch_returns_at_once() {
        let mut source = stream::iter((1..=10).map(delivery));
        let stop = CancellationToken::new();
        let Gathered::Batch(batch) = gather(&mut source, 4, Duration::from_secs(60), &stop).await
        else {
            panic!("expected a batch");
        };
        assert_eq!(
            batch.iter().map(|d| d.delivery_tag).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_batch_returns_at_the_deadline() {
        let mut source = stream::iter((1..=2).map(delivery)).chain(stream::pending());
        let stop = CancellationToken::new();
        let started = tokio::time::Instant::now();
        let Gathered::Batch(batch) =
            gather(&mut source, 100, Duration::from_millis(20), &stop).await
        else {
            panic!("expected a batch");
        };
        assert_eq!(batch.len(), 2);
        assert_eq!(started.elapsed(), Duration::from_millis(20));
    }

    #[tokio::test]
    async fn stop_before_anything_arrives_gathers_nothing() {
        let mut source = stream::pending::<lapin::Result<Delivery>>();
        let stop = CancellationToken::new();
        stop.cancel();
        assert!(matches!(
            gather(&mut source, 10, Duration::from_millis(5), &stop).await,
            Gathered::Stopped
        ));
    }
}
