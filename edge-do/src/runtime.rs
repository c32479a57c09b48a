//! The in-process runtime: a [`Namespace`] of objects of one kind, one live instance per id, requests to
//! an instance handled strictly one at a time.
//!
//! Semantics, next to Cloudflare's:
//! - **One instance per id**, created on first use from the namespace's factory with the id's storage;
//!   [`Namespace::evict`] drops an instance (the next request creates it again, and it reloads its state
//!   from storage, as after Cloudflare evicts an idle object).
//! - **Input gate, stricter**: a request runs to completion before the next one to the same object starts,
//!   even while it awaits something other than storage. Cloudflare lets another request in while an
//!   object awaits a `fetch` to elsewhere; code correct here is correct there, not always the other way.
//! - **Output gate**: a response leaves only after the handler returns, and every storage write it made
//!   has completed by then (the storage API is awaited), so an acknowledged write is durable to the
//!   extent the storage is. [`MemoryStorage`](crate::MemoryStorage) is as durable as the process.
//! - Objects of different ids run concurrently.
//!
//! Alarms, idle eviction on a timer, SQLite storage and WebSockets belong to the durable-objects issue and
//! are not here yet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use edge_core::durable::{DurableObject, ObjectId, ObjectNamespace, Storage};
use edge_core::{Body, Error, MaybeSend, MaybeSync};
use futures_util::lock::Mutex as AsyncMutex;
use http::{Request, Response};

/// What an object is created with.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ObjectState<S> {
    /// The object's id.
    pub id: ObjectId,
    /// The object's storage.
    pub storage: S,
}

struct Live<O> {
    object: O,
    /// The input gate: held for the whole of each request.
    gate: AsyncMutex<()>,
}

type Factory<O, S> = dyn Fn(ObjectState<S>) -> O + Send + Sync;
type StorageFor<S> = dyn Fn(&ObjectId) -> S + Send + Sync;

/// Objects of one kind, addressed by [`ObjectId`]. Cheap to clone; clones share the instances.
///
/// ```
/// use edge_core::durable::{DurableObject, ObjectNamespace, Storage};
/// use edge_core::{Body, Error};
/// use edge_do::{MemoryStorage, MemoryStorageProvider, Namespace, ObjectState};
/// use http::{Request, Response};
///
/// /// Counts the requests it has seen, in its storage.
/// struct Counter(ObjectState<MemoryStorage>);
///
/// impl DurableObject for Counter {
///     async fn fetch(&self, _request: Request<Body>) -> Result<Response<Body>, Error> {
///         let n = match self.0.storage.get("n").await? {
///             Some(bytes) => String::from_utf8_lossy(&bytes).parse::<u64>().unwrap_or(0),
///             None => 0,
///         } + 1;
///         self.0.storage.put("n", n.to_string().into()).await?;
///         Ok(Response::new(Body::from(n.to_string())))
///     }
/// }
///
/// # futures::executor::block_on(async {
/// let stores = MemoryStorageProvider::new();
/// let counters = Namespace::new(move |id| stores.storage(id), Counter);
/// let id = counters.id_from_name("page:/home");
/// for _ in 0..2 {
///     counters.fetch(&id, Request::new(Body::empty())).await?;
/// }
/// counters.evict(&id); // state survives in storage
/// let third = counters.fetch(&id, Request::new(Body::empty())).await?;
/// assert_eq!(third.into_body().collect(16).await?, "3");
/// # Ok::<(), Error>(()) }).unwrap();
/// ```
pub struct Namespace<O, S> {
    factory: Arc<Factory<O, S>>,
    storage: Arc<StorageFor<S>>,
    live: Arc<Mutex<HashMap<ObjectId, Arc<Live<O>>>>>,
}

impl<O, S> Clone for Namespace<O, S> {
    fn clone(&self) -> Self {
        Self {
            factory: Arc::clone(&self.factory),
            storage: Arc::clone(&self.storage),
            live: Arc::clone(&self.live),
        }
    }
}

impl<O, S> std::fmt::Debug for Namespace<O, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field(
                "live",
                &self
                    .live
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .len(),
            )
            .finish_non_exhaustive()
    }
}

impl<O, S> Namespace<O, S>
where
    O: DurableObject,
    S: Storage,
{
    /// A namespace whose objects get their storage from `storage` and are built by `factory`.
    pub fn new(
        storage: impl Fn(&ObjectId) -> S + Send + Sync + 'static,
        factory: impl Fn(ObjectState<S>) -> O + Send + Sync + 'static,
    ) -> Self {
        Self {
            factory: Arc::new(factory),
            storage: Arc::new(storage),
            live: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Drops the live instance of `id`, if any (its storage stays). Requests already inside it finish.
    pub fn evict(&self, id: &ObjectId) {
        self.lock().remove(id);
    }

    /// How many instances are live.
    #[must_use]
    pub fn live(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectId, Arc<Live<O>>>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn instance(&self, id: &ObjectId) -> Arc<Live<O>> {
        let mut live = self.lock();
        let instance = live.entry(id.clone()).or_insert_with(|| {
            let state = ObjectState {
                id: id.clone(),
                storage: (self.storage)(id),
            };
            Arc::new(Live {
                object: (self.factory)(state),
                gate: AsyncMutex::new(()),
            })
        });
        Arc::clone(instance)
    }
}

impl<O, S> ObjectNamespace for Namespace<O, S>
where
    O: DurableObject,
    S: Storage + 'static,
    Live<O>: MaybeSend + MaybeSync,
{
    async fn fetch(&self, id: &ObjectId, request: Request<Body>) -> Result<Response<Body>, Error> {
        let instance = self.instance(id);
        let _turn = instance.gate.lock().await;
        instance.object.fetch(request).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::{MemoryStorage, MemoryStorageProvider};

    /// Records how many requests are inside it at once.
    struct Probe {
        inside: AtomicUsize,
        most: Arc<AtomicUsize>,
    }

    impl DurableObject for Probe {
        async fn fetch(&self, _request: Request<Body>) -> Result<Response<Body>, Error> {
            let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            self.inside.fetch_sub(1, Ordering::SeqCst);
            Ok(Response::new(Body::empty()))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_request_at_a_time_per_object_and_objects_in_parallel() {
        let most = Arc::new(AtomicUsize::new(0));
        let probe_most = Arc::clone(&most);
        let stores = MemoryStorageProvider::new();
        let ns = Namespace::new(
            move |id| stores.storage(id),
            move |_state: ObjectState<MemoryStorage>| Probe {
                inside: AtomicUsize::new(0),
                most: Arc::clone(&probe_most),
            },
        );
        let id = ns.id_from_name("one");
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (ns, id) = (ns.clone(), id.clone());
                tokio::spawn(async move { ns.fetch(&id, Request::new(Body::empty())).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(
            most.load(Ordering::SeqCst),
            1,
            "never two requests inside one object"
        );
        for i in 0..10 {
            ns.fetch(
                &ns.id_from_name(&format!("o{i}")),
                Request::new(Body::empty()),
            )
            .await
            .unwrap();
        }
        assert_eq!(ns.live(), 11);
    }
}
