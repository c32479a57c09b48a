//! `Send` on native hosts, nothing on wasm32: the markers every contract in the SDK is written with.
//!
//! A tokio host (axum, hyper) runs futures on a multi-threaded executor, so the futures our traits return must
//! be `Send`. A Cloudflare Worker runs on a single thread and its JS handles (`worker::kv::KvStore`,
//! `worker::Fetch`, …) are `!Send`, so requiring `Send` there would force `unsafe impl Send` or `SendWrapper`
//! into every adapter. Keying the bound on the *target* rather than on a feature keeps it additive: on
//! `wasm32` the markers are implemented by every type, elsewhere they mean exactly `Send`/`Sync`.
//!
//! Trait methods return `impl Future<Output = T> + MaybeSend`; implementations simply write `async fn`.
//! Where a trait object is needed, each contract has a `Dyn…` twin that returns [`BoxFuture`].
//!
//! ```
//! use edge_core::{BoxFuture, MaybeSend};
//!
//! fn spawn_later(fut: impl Future<Output = ()> + MaybeSend + 'static) -> BoxFuture<'static, ()> {
//!     Box::pin(fut)
//! }
//! # let _ = spawn_later(async {});
//! ```

use std::pin::Pin;

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    /// `Send` on native targets; implemented by every type on `wasm32`.
    pub trait MaybeSend: Send {}
    impl<T: Send + ?Sized> MaybeSend for T {}

    /// `Sync` on native targets; implemented by every type on `wasm32`.
    pub trait MaybeSync: Sync {}
    impl<T: Sync + ?Sized> MaybeSync for T {}

    /// A boxed future: `Send` on native targets, local on `wasm32`.
    pub type BoxFuture<'a, T> = super::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

    /// A boxed stream: `Send` on native targets, local on `wasm32`.
    pub type BoxStream<'a, T> = super::Pin<Box<dyn futures_core::Stream<Item = T> + Send + 'a>>;
}

#[cfg(target_arch = "wasm32")]
mod imp {
    /// `Send` on native targets; implemented by every type on `wasm32`.
    pub trait MaybeSend {}
    impl<T: ?Sized> MaybeSend for T {}

    /// `Sync` on native targets; implemented by every type on `wasm32`.
    pub trait MaybeSync {}
    impl<T: ?Sized> MaybeSync for T {}

    /// A boxed future: `Send` on native targets, local on `wasm32`.
    pub type BoxFuture<'a, T> = super::Pin<Box<dyn Future<Output = T> + 'a>>;

    /// A boxed stream: `Send` on native targets, local on `wasm32`.
    pub type BoxStream<'a, T> = super::Pin<Box<dyn futures_core::Stream<Item = T> + 'a>>;
}

pub use imp::{BoxFuture, BoxStream, MaybeSend, MaybeSync};

/// Locks a mutex, ignoring poisoning.
///
/// Every critical section in this SDK leaves its data consistent before any code that could panic runs, so a
/// poisoned lock carries no broken invariant; refusing to continue would turn one panic into many.
pub(crate) fn lock<T: ?Sized>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
