//! Every watch of a process on one etcd watch stream, as etcd's own Go client does (its
//! `watchGrpcStream`): a watch costs etcd and this process a watch id, not a gRPC stream with
//! its own buffers. An agent simulating thousands of nodes holds one stream instead of
//! thousands, and each of its nodes still watches only its own tasks.
//!
//! etcd answers the create requests of a stream in the order they were sent, which is how a
//! `created` response is matched to its watch. When the stream breaks, every watch on it
//! gets the error and resumes on a new stream, as it would have on its own.

use std::collections::{HashMap, VecDeque};

use etcd_client::{WatchOptions, WatchResponse, WatchStream};
use tokio::sync::mpsc;

/// Responses travel boxed: a channel reserves room for 32 items at once, and there is one
/// channel per watch.
type Response = Box<Result<WatchResponse, etcd_client::Error>>;
type Reply = mpsc::UnboundedSender<Response>;

enum Command {
    Create {
        token: u64,
        key: Vec<u8>,
        options: WatchOptions,
        reply: Reply,
    },
    Drop(u64),
}

/// The handle every clone of a `Client` shares; the stream is opened by the first watch.
pub struct WatchMux {
    commands: mpsc::UnboundedSender<Command>,
    next: std::sync::atomic::AtomicU64,
}

impl WatchMux {
    pub fn new(etcd: etcd_client::Client) -> WatchMux {
        let (commands, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(etcd, rx));
        WatchMux {
            commands,
            next: Default::default(),
        }
    }

    /// Starts a watch of `key` (with `options`) on the shared stream.
    pub fn watch(&self, key: impl Into<Vec<u8>>, options: WatchOptions) -> Watch {
        let token = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (reply, responses) = mpsc::unbounded_channel();
        let _ = self.commands.send(Command::Create {
            token,
            key: key.into(),
            options,
            reply,
        });
        Watch {
            token,
            responses,
            commands: self.commands.clone(),
        }
    }
}

/// One watch on the shared stream; dropping it cancels the watch.
pub struct Watch {
    token: u64,
    responses: mpsc::UnboundedReceiver<Response>,
    commands: mpsc::UnboundedSender<Command>,
}

impl Watch {
    /// The next response of this watch (its `created` response first); an error when the
    /// shared stream broke, after which this watch receives nothing more.
    pub async fn message(&mut self) -> Result<Option<WatchResponse>, etcd_client::Error> {
        match self.responses.recv().await {
            Some(resp) => (*resp).map(Some),
            None => Ok(None),
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Drop(self.token));
    }
}

struct Sub {
    reply: Reply,
    watch_id: Option<i64>,
}

/// The watches of the current stream.
#[derive(Default)]
struct Watches {
    subs: HashMap<u64, Sub>,
    /// Tokens of create requests sent and not answered yet, oldest first.
    pending: VecDeque<u64>,
    by_id: HashMap<i64, u64>,
}

impl Watches {
    /// Every watch learns that the stream is gone; they start over on a new one.
    fn fail_all(&mut self, error: &str) {
        for (_, sub) in self.subs.drain() {
            let error = etcd_client::Error::WatchError(error.to_string());
            let _ = sub.reply.send(Box::new(Err(error)));
        }
        self.pending.clear();
        self.by_id.clear();
    }
}

async fn run(mut etcd: etcd_client::Client, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut stream: Option<WatchStream> = None;
    let mut watches = Watches::default();
    loop {
        let next = match stream.as_mut() {
            Some(s) => tokio::select! {
                command = commands.recv() => Err(command),
                message = s.message() => Ok(message),
            },
            None => Err(commands.recv().await),
        };
        match next {
            Err(None) => return,
            Err(Some(Command::Create {
                token,
                key,
                options,
                reply,
            })) => {
                if reply.is_closed() {
                    continue;
                }
                let sent = match stream.as_mut() {
                    Some(s) => s.watch(key, Some(options)).await.map(|_| None),
                    None => etcd.watch(key, Some(options)).await.map(Some),
                };
                match sent {
                    Ok(opened) => {
                        if opened.is_some() {
                            stream = opened;
                        }
                        watches.subs.insert(
                            token,
                            Sub {
                                reply,
                                watch_id: None,
                            },
                        );
                        watches.pending.push_back(token);
                    }
                    Err(e) => {
                        let _ = reply.send(Box::new(Err(e)));
                        if stream.take().is_some() {
                            watches.fail_all("the shared watch stream broke");
                        }
                    }
                }
            }
            Err(Some(Command::Drop(token))) => {
                let Some(sub) = watches.subs.remove(&token) else {
                    continue;
                };
                // One still waiting for its id is cancelled when the id comes.
                if let (Some(id), Some(s)) = (sub.watch_id, stream.as_mut()) {
                    watches.by_id.remove(&id);
                    if s.cancel(id).await.is_err() {
                        stream = None;
                        watches.fail_all("the shared watch stream broke");
                    }
                }
            }
            Ok(Ok(Some(resp))) => {
                let id = resp.watch_id();
                if resp.created() {
                    let Some(token) = watches.pending.pop_front() else {
                        continue;
                    };
                    match watches.subs.get_mut(&token) {
                        Some(sub) if !resp.canceled() => {
                            sub.watch_id = Some(id);
                            watches.by_id.insert(id, token);
                        }
                        Some(_) => {}
                        // Dropped before it was created.
                        None => {
                            if let Some(s) = stream.as_mut() {
                                let _ = s.cancel(id).await;
                            }
                            continue;
                        }
                    }
                    deliver(&mut watches, token, resp);
                } else if let Some(&token) = watches.by_id.get(&id) {
                    deliver(&mut watches, token, resp);
                }
            }
            Ok(result) => {
                stream = None;
                let why = match result {
                    Err(e) => format!("the shared watch stream broke: {e}"),
                    _ => "the shared watch stream was closed".to_string(),
                };
                tracing::debug!(watches = watches.subs.len(), %why, "resuming every watch");
                watches.fail_all(&why);
            }
        }
    }
}

/// Hands `resp` to its watch; a watch etcd cancelled (compaction, an error) is forgotten.
fn deliver(watches: &mut Watches, token: u64, resp: WatchResponse) {
    let canceled = resp.canceled();
    if let Some(sub) = watches.subs.get(&token) {
        // A watch whose receiver is gone is cancelled by its `Drop` command.
        let _ = sub.reply.send(Box::new(Ok(resp)));
    }
    if canceled
        && let Some(sub) = watches.subs.remove(&token)
        && let Some(id) = sub.watch_id
    {
        watches.by_id.remove(&id);
    }
}
