//! The common edge KV patterns, each a small type over any [`KvStore`](edge_core::KvStore).
//!
//! | pattern | type | what it does |
//! |---|---|---|
//! | read-through | [`ReadThrough`] | serve from KV; on a miss load from the origin (coalesced), answer, and fill KV in the background |
//! | write-through with invalidation | [`WriteThrough`] | write to the origin first, then delete the KV entry |
//! | lazily loaded document | [`LazyDocument`] | a JSON document (config, flags, keys) read on first use, kept in memory with a TTL, refreshed in the background |
//! | read-your-writes | [`ReadYourWrites`] | a session overlay serving a user's own recent writes while the local replica catches up |

mod lazy;
mod read_through;
mod read_your_writes;
mod write_through;

pub use lazy::LazyDocument;
pub use read_through::{FetchLoader, Loader, ReadThrough};
pub use read_your_writes::{ReadYourWrites, RecentWrites};
pub use write_through::{WriteThrough, Writer};
