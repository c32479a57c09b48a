//! Quotas: how much, over how long, with how much burst. Nonsense quotas cannot be built.

use std::borrow::Cow;
use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

/// Why a [`Quota`] could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuotaError {
    /// A limit (or burst) of zero admits nothing: deny outright instead.
    ZeroLimit,
    /// A period of zero would mean an infinite rate.
    ZeroPeriod,
    /// The period does not fit in 2^64 nanoseconds (about 584 years).
    PeriodTooLong,
    /// More than one request per nanosecond: below the clock's resolution.
    RateTooHigh,
    /// The policy name is not a valid Structured Fields string (printable ASCII, at most 64 bytes).
    BadName,
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZeroLimit => "a quota needs a limit of at least one",
            Self::ZeroPeriod => "a quota needs a period longer than zero",
            Self::PeriodTooLong => "a quota period must be under 584 years",
            Self::RateTooHigh => "a quota may allow at most one request per nanosecond",
            Self::BadName => "a policy name must be printable ASCII of at most 64 bytes",
        })
    }
}

impl std::error::Error for QuotaError {}

/// `limit` requests per `period`, of which up to `burst` may arrive at once (by default `burst = limit`).
///
/// In GCRA terms, requests are spaced by an *emission interval* `period / limit`, and a client may run
/// ahead of that schedule by `burst` intervals.
///
/// ```
/// use std::time::Duration;
/// use edge_auth::ratelimit::Quota;
///
/// let quota = Quota::per_minute(std::num::NonZeroU32::new(600).unwrap()).with_burst(20)?;
/// assert_eq!(quota.emission_interval(), Duration::from_millis(100));
/// assert_eq!(quota.burst(), 20);
/// assert!(Quota::new(0, Duration::from_secs(1)).is_err());
/// # Ok::<(), edge_auth::ratelimit::QuotaError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    limit: NonZeroU32,
    burst: NonZeroU32,
    period_nanos: u64,
    interval_nanos: u64,
    name: &'static str,
}

impl Quota {
    /// `limit` requests per `period`.
    ///
    /// # Errors
    ///
    /// [`QuotaError`] for a zero limit or period, a period over 584 years, or more than one request per
    /// nanosecond.
    pub fn new(limit: u32, period: Duration) -> Result<Self, QuotaError> {
        let limit = NonZeroU32::new(limit).ok_or(QuotaError::ZeroLimit)?;
        if period.is_zero() {
            return Err(QuotaError::ZeroPeriod);
        }
        let period_nanos =
            u64::try_from(period.as_nanos()).map_err(|_| QuotaError::PeriodTooLong)?;
        let interval_nanos = period_nanos / u64::from(limit.get());
        if interval_nanos == 0 {
            return Err(QuotaError::RateTooHigh);
        }
        Ok(Self {
            limit,
            burst: limit,
            period_nanos,
            interval_nanos,
            name: "default",
        })
    }

    /// `limit` requests per second, bursts of `limit`. Infallible, and usable in a `const` (more than
    /// 10⁹ a second is capped at one per nanosecond).
    #[must_use]
    pub const fn per_second(limit: NonZeroU32) -> Self {
        Self::per(limit, 1_000_000_000)
    }

    /// `limit` requests per minute, bursts of `limit`.
    #[must_use]
    pub const fn per_minute(limit: NonZeroU32) -> Self {
        Self::per(limit, 60_000_000_000)
    }

    /// `limit` requests per hour, bursts of `limit`.
    #[must_use]
    pub const fn per_hour(limit: NonZeroU32) -> Self {
        Self::per(limit, 3_600_000_000_000)
    }

    const fn per(limit: NonZeroU32, period_nanos: u64) -> Self {
        let interval_nanos = period_nanos / limit.get() as u64;
        Self {
            limit,
            burst: limit,
            period_nanos,
            interval_nanos: if interval_nanos == 0 {
                1
            } else {
                interval_nanos
            },
            name: "default",
        }
    }

    /// The same rate with a different burst (how many requests may arrive at once).
    ///
    /// # Errors
    ///
    /// [`QuotaError::ZeroLimit`] for a burst of zero, [`QuotaError::PeriodTooLong`] if `burst`
    /// intervals overflow.
    pub fn with_burst(mut self, burst: u32) -> Result<Self, QuotaError> {
        self.burst = NonZeroU32::new(burst).ok_or(QuotaError::ZeroLimit)?;
        self.interval_nanos
            .checked_mul(u64::from(burst))
            .ok_or(QuotaError::PeriodTooLong)?;
        Ok(self)
    }

    /// The same quota under a policy name, as announced in `RateLimit-Policy` (default `"default"`). A
    /// name read at run time (from configuration) is taken as a `String`: names are kept once each
    /// for the life of the process (at most [`MAX_POLICY_NAMES`] distinct ones), so a `Quota` stays a
    /// small `Copy` value on the hot path.
    ///
    /// # Errors
    ///
    /// [`QuotaError::BadName`] unless `name` is 1–64 bytes of printable ASCII, or when
    /// [`MAX_POLICY_NAMES`] other names are already kept.
    pub fn with_name(mut self, name: impl Into<Cow<'static, str>>) -> Result<Self, QuotaError> {
        let name = name.into();
        let printable = name.bytes().all(|b| (0x20..0x7f).contains(&b));
        if name.is_empty() || name.len() > 64 || !printable {
            return Err(QuotaError::BadName);
        }
        self.name = match name {
            Cow::Borrowed(name) => name,
            Cow::Owned(name) => crate::intern::intern(name).ok_or(QuotaError::BadName)?,
        };
        Ok(self)
    }

    /// Requests per period.
    #[must_use]
    pub fn limit(&self) -> u32 {
        self.limit.get()
    }

    /// Requests that may arrive at once.
    #[must_use]
    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    /// The period the limit applies to.
    #[must_use]
    pub fn period(&self) -> Duration {
        Duration::from_nanos(self.period_nanos)
    }

    /// The policy name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The spacing between requests at the sustained rate: `period / limit`.
    #[must_use]
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.interval_nanos)
    }

    pub(crate) fn interval_nanos(&self) -> u64 {
        self.interval_nanos
    }

    /// How far ahead of schedule a client may run: `burst × interval` (checked at construction).
    pub(crate) fn capacity_nanos(&self) -> u64 {
        self.interval_nanos
            .saturating_mul(u64::from(self.burst.get()))
    }
}

/// Distinct policy names given as owned strings that one process keeps (each at most 64 bytes).
pub const MAX_POLICY_NAMES: usize = crate::intern::MAX_NAMES;
