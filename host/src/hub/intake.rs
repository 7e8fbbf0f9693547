//! Group commit of webhook events: every webhook's events go to one writer task, which
//! stores what has queued up meanwhile in a single transaction and answers each request after
//! that commit. Under concurrent deliveries a transaction then carries many webhooks, instead
//! of each paying its own turn at the write lock and its own commit (and cutting the inbound
//! processor's transaction short, see [`crate::store::Db::intake_waiting`]).
//!
//! A webhook is still answered only once its events are durable.

use tokio::sync::{mpsc, oneshot};

use crate::store::{Db, NewInboundEvent};

/// Most webhook requests one transaction takes.
const MAX_BATCH: usize = 128;

/// One webhook's rows, and where to say how many were new.
struct Request {
    rows: Vec<NewInboundEvent>,
    done: oneshot::Sender<Result<u64, String>>,
}

/// The sending side of the writer task; cheap to share.
pub(crate) struct IntakeWriter {
    queue: mpsc::UnboundedSender<Request>,
}

impl IntakeWriter {
    /// Starts the writer task on `db`. It ends when the writer is dropped.
    pub(crate) fn start(db: Db) -> Self {
        let (queue, requests) = mpsc::unbounded_channel();
        tokio::spawn(run(db, requests));
        Self { queue }
    }

    /// Stores `rows` durably (deduplicated) and returns how many were new.
    pub(crate) async fn store(&self, rows: Vec<NewInboundEvent>) -> Result<u64, String> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Request { rows, done })
            .map_err(|_| "the intake writer has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the intake writer stopped before storing the events".to_string())?
    }
}

async fn run(db: Db, mut requests: mpsc::UnboundedReceiver<Request>) {
    let mut batch = Vec::new();
    while let Some(first) = requests.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        match write(&db, &batch).await {
            Ok(counts) => {
                for (request, new) in batch.drain(..).zip(counts) {
                    // The request may have gone away (a client timeout); its events are stored.
                    let _ = request.done.send(Ok(new));
                }
            }
            Err(error) => {
                // The whole batch rolled back: every sender gets a 500 and delivers again.
                let message = format!("storing the events failed: {error}");
                for request in batch.drain(..) {
                    let _ = request.done.send(Err(message.clone()));
                }
            }
        }
    }
}

/// One transaction for the whole batch; the new rows of each request, in order.
async fn write(db: &Db, batch: &[Request]) -> Result<Vec<u64>, crate::store::StoreError> {
    let mut tx = db.begin_intake().await?;
    let mut counts = Vec::with_capacity(batch.len());
    for request in batch {
        counts.push(tx.insert_inbound_events(&request.rows).await?);
    }
    tx.commit().await?;
    Ok(counts)
}
