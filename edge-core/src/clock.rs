//! Time, injected: a monotonic [`Instant`] for measuring and a wall-clock [`SystemTime`] for expiry.
//!
//! `std::time::Instant::now()` and `SystemTime::now()` panic on `wasm32-unknown-unknown`, and tests that sleep
//! to wait for a TTL are slow and flaky. So nothing in the SDK reads the time itself: every time-dependent
//! piece takes a [`Clock`]. Hosts use [`SystemClock`] (which reads `Date.now()` inside a Worker); tests use
//! [`ManualClock`] and move time forward by hand.
//!
//! ```
//! use std::time::Duration;
//! use edge_core::{Clock, ManualClock};
//!
//! let clock = ManualClock::new();
//! let start = clock.now();
//! clock.advance(Duration::from_secs(90));
//! assert_eq!(clock.now().duration_since(start), Duration::from_secs(90));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Add, Sub};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sync::{BoxFuture, MaybeSend, MaybeSync, lock};

/// A point on a clock's monotonic timeline, measured from that clock's own origin.
///
/// Only instants from the same clock can be compared meaningfully. Arithmetic saturates instead of
/// panicking, so a hostile duration (say, a `max-age` of 2^63 seconds) cannot crash a request.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(Duration);

impl Instant {
    /// The clock's origin.
    pub const ORIGIN: Self = Self(Duration::ZERO);

    /// The instant `since_origin` after the clock's origin.
    #[must_use]
    pub const fn from_origin(since_origin: Duration) -> Self {
        Self(since_origin)
    }

    /// How far this instant is from the clock's origin.
    #[must_use]
    pub const fn since_origin(self) -> Duration {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    #[must_use]
    pub fn duration_since(self, earlier: Self) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// Time elapsed from `earlier` to `self`, or `None` if `earlier` is later.
    #[must_use]
    pub fn checked_duration_since(self, earlier: Self) -> Option<Duration> {
        self.0.checked_sub(earlier.0)
    }

    /// `self + duration`, or `None` on overflow.
    #[must_use]
    pub fn checked_add(self, duration: Duration) -> Option<Self> {
        self.0.checked_add(duration).map(Self)
    }
}

impl Add<Duration> for Instant {
    type Output = Self;
    /// Saturates at the largest representable instant.
    fn add(self, rhs: Duration) -> Self {
        Self(self.0.saturating_add(rhs))
    }
}

impl Sub<Duration> for Instant {
    type Output = Self;
    /// Saturates at the origin.
    fn sub(self, rhs: Duration) -> Self {
        Self(self.0.saturating_sub(rhs))
    }
}

impl Sub for Instant {
    type Output = Duration;
    /// Saturates at zero.
    fn sub(self, rhs: Self) -> Duration {
        self.duration_since(rhs)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instant({:?})", self.0)
    }
}

/// A source of time.
///
/// `now` is monotonic: it never goes backwards, so durations computed from it are never negative.
/// `wall_time` is the calendar time used for absolute expiry (`Expires`, KV expiration, JWT `exp`); it may
/// jump when the host's clock is corrected.
///
/// Implementations are cheap to call and never block.
pub trait Clock: MaybeSend + MaybeSync {
    /// The current monotonic instant.
    fn now(&self) -> Instant;

    /// [`Clock::now`] as whole nanoseconds since the clock's origin (saturating), for hot paths that only
    /// compare and subtract times (rate limiters): no round trip through `Duration`'s seconds and
    /// nanoseconds.
    fn now_nanos(&self) -> u64 {
        u64::try_from(self.now().since_origin().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The current wall-clock time.
    fn wall_time(&self) -> SystemTime;

    /// The current wall-clock time as a duration since the Unix epoch (zero for times before it).
    fn unix_time(&self) -> Duration {
        self.wall_time()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Instant {
        (**self).now()
    }
    fn now_nanos(&self) -> u64 {
        (**self).now_nanos()
    }
    fn wall_time(&self) -> SystemTime {
        (**self).wall_time()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Instant {
        (**self).now()
    }
    fn now_nanos(&self) -> u64 {
        (**self).now_nanos()
    }
    fn wall_time(&self) -> SystemTime {
        (**self).wall_time()
    }
}

/// The host's clock: `std::time` on native targets, `Date.now()` on `wasm32` (Workers).
///
/// Inside a Worker, `Date.now()` advances only across IO (a Spectre mitigation of the platform), so two reads
/// within one CPU-bound stretch return the same time. The monotonic reading is clamped so that it never goes
/// backwards even if the wall clock does.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct SystemClock;

impl SystemClock {
    /// The host's clock.
    #[must_use]
    pub const fn new() -> Self {
        Self
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant(Duration::from_nanos(self.now_nanos()))
    }

    fn now_nanos(&self) -> u64 {
        // The first call calibrates quanta's TSC scaling against the OS clock (typically 10–20 ms, at
        // most 200 ms, once per process). A process-wide clock held here (not quanta's global one) skips
        // its thread-local mock check; raw counter deltas are scaled straight to nanoseconds.
        static CLOCK: std::sync::OnceLock<(quanta::Clock, u64)> = std::sync::OnceLock::new();
        let (clock, origin) = CLOCK.get_or_init(|| {
            let clock = quanta::Clock::new();
            let origin = clock.raw();
            (clock, origin)
        });
        clock.delta_as_nanos(*origin, clock.raw())
    }

    fn wall_time(&self) -> SystemTime {
        SystemTime::now()
    }
}

#[cfg(target_arch = "wasm32")]
impl Clock for SystemClock {
    fn now(&self) -> Instant {
        // Monotonic in microseconds since the epoch, clamped to the largest value seen so far.
        static LAST_MICROS: AtomicU64 = AtomicU64::new(0);
        let now = wasm_unix_micros();
        let last = LAST_MICROS.fetch_max(now, Ordering::Relaxed);
        Instant(Duration::from_micros(now.max(last)))
    }

    fn wall_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(wasm_unix_micros())
    }
}

#[cfg(target_arch = "wasm32")]
fn wasm_unix_micros() -> u64 {
    let millis = js_sys::Date::now();
    // `Date.now()` is a finite, non-negative number of milliseconds; the float-to-int cast saturates anyway.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let micros = (millis * 1000.0) as u64;
    micros
}

/// A clock that moves only when told to. For tests and simulations.
///
/// Clones share the same time. [`advance`](Self::advance) moves the monotonic and the wall clock together;
/// [`set_wall_time`](Self::set_wall_time) jumps the wall clock alone, to test skew. [`sleep`](Self::sleep)
/// gives futures that complete when the clock is advanced past their deadline, so simulated latency needs no
/// runtime timer and no real waiting.
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

struct ManualInner {
    mono_nanos: AtomicU64,
    wall_nanos: AtomicU64,
    sleepers: Mutex<Sleepers>,
}

#[derive(Default)]
struct Sleepers {
    next_id: u64,
    waiting: BTreeMap<u64, (Instant, Waker)>,
}

/// The wall time a fresh [`ManualClock`] starts at: 2026-01-01T00:00:00Z.
pub const MANUAL_CLOCK_START: Duration = Duration::from_secs(1_767_225_600);

impl ManualClock {
    /// A clock at instant zero whose wall time is [`MANUAL_CLOCK_START`].
    #[must_use]
    pub fn new() -> Self {
        Self::starting_at(UNIX_EPOCH + MANUAL_CLOCK_START)
    }

    /// A clock at instant zero whose wall time is `wall` (clamped to the Unix epoch).
    #[must_use]
    pub fn starting_at(wall: SystemTime) -> Self {
        let wall = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        Self {
            inner: Arc::new(ManualInner {
                mono_nanos: AtomicU64::new(0),
                wall_nanos: AtomicU64::new(saturating_nanos(wall)),
                sleepers: Mutex::new(Sleepers::default()),
            }),
        }
    }

    /// Moves both clocks forward by `by` and wakes every sleeper whose deadline has passed.
    pub fn advance(&self, by: Duration) {
        let nanos = saturating_nanos(by);
        add_saturating(&self.inner.mono_nanos, nanos);
        add_saturating(&self.inner.wall_nanos, nanos);
        self.wake_due();
    }

    /// Sets the wall clock alone (the monotonic clock does not move).
    pub fn set_wall_time(&self, wall: SystemTime) {
        let wall = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        self.inner
            .wall_nanos
            .store(saturating_nanos(wall), Ordering::SeqCst);
    }

    /// A future that completes once the clock has been advanced by `duration` from now.
    pub fn sleep(&self, duration: Duration) -> ManualSleep {
        self.sleep_until(self.now() + duration)
    }

    /// A future that completes once the clock reads `deadline` or later.
    pub fn sleep_until(&self, deadline: Instant) -> ManualSleep {
        ManualSleep {
            clock: self.clone(),
            deadline,
            id: None,
        }
    }

    /// How many [`ManualSleep`] futures are waiting for the clock to move.
    #[must_use]
    pub fn sleepers(&self) -> usize {
        lock(&self.inner.sleepers).waiting.len()
    }

    fn wake_due(&self) {
        let now = self.now();
        let due: Vec<Waker> = {
            let mut sleepers = lock(&self.inner.sleepers);
            let ids: Vec<u64> = sleepers
                .waiting
                .iter()
                .filter(|(_, (deadline, _))| *deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            ids.iter()
                .filter_map(|id| sleepers.waiting.remove(id))
                .map(|(_, waker)| waker)
                .collect()
        };
        // Wake outside the lock: a waker may poll inline and register again.
        due.into_iter().for_each(Waker::wake);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &self.now())
            .field("wall_time", &self.wall_time())
            .finish_non_exhaustive()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant(Duration::from_nanos(
            self.inner.mono_nanos.load(Ordering::SeqCst),
        ))
    }

    fn wall_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.inner.wall_nanos.load(Ordering::SeqCst))
    }
}

/// The future returned by [`ManualClock::sleep`]. Cancel-safe: dropping it unregisters it.
#[must_use = "futures do nothing unless polled"]
pub struct ManualSleep {
    clock: ManualClock,
    deadline: Instant,
    id: Option<u64>,
}

impl ManualSleep {
    /// The instant this sleep completes at.
    #[must_use]
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for ManualSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut sleepers = lock(&this.clock.inner.sleepers);
        // Checked under the lock so an `advance` cannot slip between the check and the registration.
        if this.clock.now() >= this.deadline {
            if let Some(id) = this.id.take() {
                sleepers.waiting.remove(&id);
            }
            return Poll::Ready(());
        }
        let id = *this.id.get_or_insert_with(|| {
            sleepers.next_id += 1;
            sleepers.next_id
        });
        sleepers
            .waiting
            .insert(id, (this.deadline, cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for ManualSleep {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            lock(&self.clock.inner.sleepers).waiting.remove(&id);
        }
    }
}

impl fmt::Debug for ManualSleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualSleep")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn add_saturating(cell: &AtomicU64, by: u64) {
    // fetch_update with a closure that always returns Some cannot fail.
    let _ = cell.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
        Some(v.saturating_add(by))
    });
}

/// Sleeps: the host's timer, for work that waits on its own (retry backoff, export deadlines).
///
/// Hosts provide one: [`TokioTimer`](crate::host::tokio::TokioTimer) under tokio (feature `tokio`), a `setTimeout` promise in a Worker,
/// and [`ManualClock`] in tests, whose sleeps end when the test advances it.
pub trait Timer: MaybeSend + MaybeSync {
    /// A future that completes `duration` from now.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

impl Timer for ManualClock {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(ManualClock::sleep(self, duration))
    }
}

impl<T: Timer + ?Sized> Timer for Arc<T> {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        (**self).sleep(duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instant_arithmetic_saturates() {
        let t = Instant::from_origin(Duration::from_secs(5));
        assert_eq!(t - Duration::from_secs(10), Instant::ORIGIN);
        assert_eq!(Instant::ORIGIN - t, Duration::ZERO);
        assert_eq!(
            (Instant::ORIGIN + Duration::MAX) + Duration::from_secs(1),
            Instant::from_origin(Duration::MAX)
        );
        assert_eq!(t.checked_duration_since(t + Duration::from_secs(1)), None);
    }

    #[test]
    fn system_clock_is_monotonic() {
        let clock = SystemClock::new();
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
        assert!(clock.unix_time() > MANUAL_CLOCK_START - Duration::from_secs(86_400 * 365));
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new();
        let other = clock.clone();
        assert_eq!(clock.now(), Instant::ORIGIN);
        assert_eq!(clock.unix_time(), MANUAL_CLOCK_START);
        other.advance(Duration::from_millis(1500));
        assert_eq!(
            clock.now(),
            Instant::from_origin(Duration::from_millis(1500))
        );
        assert_eq!(
            clock.unix_time(),
            MANUAL_CLOCK_START + Duration::from_millis(1500)
        );
        clock.set_wall_time(UNIX_EPOCH);
        assert_eq!(clock.unix_time(), Duration::ZERO);
        assert_eq!(
            clock.now(),
            Instant::from_origin(Duration::from_millis(1500))
        );
    }

    #[test]
    fn manual_sleep_completes_on_advance_and_unregisters_on_drop() {
        use futures_util::FutureExt;
        let clock = ManualClock::new();
        let mut sleep = clock.sleep(Duration::from_secs(1));
        assert!((&mut sleep).now_or_never().is_none());
        assert_eq!(clock.sleepers(), 1);
        clock.advance(Duration::from_millis(999));
        assert!((&mut sleep).now_or_never().is_none());
        clock.advance(Duration::from_millis(1));
        assert_eq!(clock.sleepers(), 0);
        assert!(sleep.now_or_never().is_some());

        let dropped = clock.sleep(Duration::from_secs(1));
        let mut dropped = Box::pin(dropped);
        assert!(dropped.as_mut().now_or_never().is_none());
        drop(dropped);
        assert_eq!(clock.sleepers(), 0);
    }
}
