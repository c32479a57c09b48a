//! A linearizability checker for histories of concurrent calls to one object (feature `testing`).
//!
//! Record each call's input, output and the interval it was in flight (from just before it was sent to
//! just after its answer arrived), then ask [`check`] whether some total order of the calls, consistent
//! with real time (a call that returned before another was sent comes first) and with a sequential
//! [`Model`], explains every output. The search is Wing & Gong's, with Lowe's memo of visited
//! `(calls linearized, model state)` pairs (kept as fingerprints, so memory grows with the states
//! visited and not with the history's length), which keeps histories of thousands of calls tractable.
//! Histories over many independent keys are checked key by key with [`check_partitioned`].
//!
//! ```
//! use edge_do::linearizability::{Call, Register, RegisterOp, Verdict, check};
//!
//! // A write of 1 finished before a read began, yet the read saw nothing: a stale read.
//! let stale = [
//!     Call::new(0, 0, 10, RegisterOp::Write(1), None),
//!     Call::new(1, 20, 30, RegisterOp::Read, None),
//! ];
//! assert_eq!(check(Register::default(), &stale), Verdict::NotLinearizable);
//!
//! // Overlapping, the same read is fine: it may be ordered before the write.
//! let overlapping = [
//!     Call::new(0, 0, 25, RegisterOp::Write(1), None),
//!     Call::new(1, 20, 30, RegisterOp::Read, None),
//! ];
//! assert!(matches!(check(Register::default(), &overlapping), Verdict::Linearizable(_)));
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};

/// A sequential specification: what each input may answer in each state.
pub trait Model: Clone + Eq + Hash {
    /// A call's input.
    type Input;
    /// A call's output.
    type Output;

    /// The state after `input` answered `output`, or `None` if it could not have answered that here.
    fn step(&self, input: &Self::Input, output: &Self::Output) -> Option<Self>;
}

/// One completed call: who made it, when it was in flight, what it asked and what it got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call<I, O> {
    /// The client that made it (informational).
    pub client: usize,
    /// When it was sent (any monotonic unit).
    pub invoked: u64,
    /// When its answer arrived (same unit; not before `invoked`).
    pub returned: u64,
    /// What it asked.
    pub input: I,
    /// What it got.
    pub output: O,
}

impl<I, O> Call<I, O> {
    /// A call.
    pub fn new(client: usize, invoked: u64, returned: u64, input: I, output: O) -> Self {
        Self {
            client,
            invoked,
            returned: returned.max(invoked),
            input,
            output,
        }
    }
}

/// What [`check`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Linearizable; a witness order (indices into the history).
    Linearizable(Vec<usize>),
    /// No order explains the outputs.
    NotLinearizable,
    /// The search gave up after [`STEP_BUDGET`] steps without an answer.
    Unknown,
}

/// Search steps [`check`] takes before answering [`Verdict::Unknown`].
pub const STEP_BUDGET: usize = 50_000_000;

/// Checks `history` against `model` starting in `initial`. See the [module docs](self).
///
/// Memory stays proportional to the states visited, not to the states times the history's length: a
/// visited `(calls linearized, model state)` pair is remembered as a 192-bit fingerprint (a Zobrist
/// hash of the set of calls, kept up to date in O(1) per step, and the state's 64-bit hash), not as a
/// copy of the set. Two different pairs sharing a fingerprint would prune a branch that was not
/// explored; at 2⁻¹²⁸ per pair of call sets that is below any other failure of a test. The earliest return among
/// the calls still open (the *horizon*) is kept in an ordered map, so each step costs O(log n) rather
/// than a scan of the history.
pub fn check<M: Model>(initial: M, history: &[Call<M::Input, M::Output>]) -> Verdict {
    let n = history.len();
    // Calls in order of invocation: a call can be linearized next only if it was invoked before every
    // remaining call returned.
    let mut by_invocation: Vec<usize> = (0..n).collect();
    by_invocation.sort_by_key(|&i| history[i].invoked);
    let zobrist: Vec<u128> = zobrist_keys(n);
    // SipHash under fixed keys: the same fingerprints on every run.
    let state_hash = |state: &M| {
        let mut hasher = std::hash::DefaultHasher::new();
        state.hash(&mut hasher);
        hasher.finish()
    };

    let mut done = vec![false; n];
    let mut done_print: u128 = 0;
    // Returns of the calls not yet linearized, with how many calls share each.
    let mut open_returns: BTreeMap<u64, usize> = BTreeMap::new();
    for call in history {
        *open_returns.entry(call.returned).or_insert(0) += 1;
    }
    let close = |open: &mut BTreeMap<u64, usize>, at: u64| {
        if let Some(count) = open.get_mut(&at) {
            *count -= 1;
            if *count == 0 {
                open.remove(&at);
            }
        }
    };
    // The first position in `by_invocation` not yet linearized: everything before it is.
    let mut first_open = 0usize;
    let mut seen: HashSet<(u128, u64)> = HashSet::new();
    let mut order: Vec<usize> = Vec::with_capacity(n);
    // The search stack: per depth, the state before it and the next candidate position to try.
    let mut stack: Vec<(M, usize)> = vec![(initial, 0)];
    let mut position_of = vec![0usize; n];
    for (position, &i) in by_invocation.iter().enumerate() {
        position_of[i] = position;
    }
    let mut steps = 0usize;
    while let Some((state, from)) = stack.last().cloned() {
        if order.len() == n {
            return Verdict::Linearizable(order);
        }
        steps += 1;
        if steps > STEP_BUDGET {
            return Verdict::Unknown;
        }
        let horizon = open_returns.keys().next().copied().unwrap_or(u64::MAX);
        let mut advanced = false;
        for (position, &i) in by_invocation.iter().enumerate().skip(from.max(first_open)) {
            if history[i].invoked > horizon {
                break;
            }
            if done[i] {
                continue;
            }
            let Some(next) = state.step(&history[i].input, &history[i].output) else {
                continue;
            };
            let print = done_print ^ zobrist[i];
            if !seen.insert((print, state_hash(&next))) {
                continue;
            }
            done[i] = true;
            done_print = print;
            close(&mut open_returns, history[i].returned);
            while by_invocation.get(first_open).is_some_and(|&j| done[j]) {
                first_open += 1;
            }
            if let Some(top) = stack.last_mut() {
                top.1 = position + 1;
            }
            order.push(i);
            stack.push((next, 0));
            advanced = true;
            break;
        }
        if !advanced {
            // Dead end: undo the last choice and try its next sibling.
            stack.pop();
            if let Some(i) = order.pop() {
                done[i] = false;
                done_print ^= zobrist[i];
                *open_returns.entry(history[i].returned).or_insert(0) += 1;
                first_open = first_open.min(position_of[i]);
            }
        }
    }
    Verdict::NotLinearizable
}

/// Checks each part of `history` on its own, the parts being the calls `part` maps to the same key.
///
/// For a model of independent keys (a map of registers, a counter per name, objects of a namespace),
/// a history is linearizable exactly when every key's sub-history is (linearizability is *local*,
/// Herlihy & Wing), and searching each part alone is exponentially cheaper than searching them
/// interleaved. `initial` is each part's starting state. The witness lists each part's order in turn.
///
/// ```
/// use edge_do::linearizability::{Call, Register, RegisterOp, Verdict, check_partitioned};
///
/// // Two keys, each with a write and an overlapping read; on key 2 the read saw a value never written.
/// let history = [
///     Call::new(0, 0, 10, (1, RegisterOp::Write(1)), None),
///     Call::new(1, 5, 15, (1, RegisterOp::Read), Some(1)),
///     Call::new(2, 0, 10, (2, RegisterOp::Write(2)), None),
///     Call::new(3, 5, 15, (2, RegisterOp::Read), Some(7)),
/// ];
/// let by_key = |call: &Call<(u8, RegisterOp), Option<u64>>| call.input.0;
/// let verdict = check_partitioned(Register::default(), &history, by_key, |call| {
///     Call::new(call.client, call.invoked, call.returned, call.input.1, call.output)
/// });
/// assert_eq!(verdict, Verdict::NotLinearizable);
/// ```
pub fn check_partitioned<M, C, K>(
    initial: M,
    history: &[C],
    part: impl Fn(&C) -> K,
    call: impl Fn(&C) -> Call<M::Input, M::Output>,
) -> Verdict
where
    M: Model,
    K: Hash + Eq,
{
    let mut parts: HashMap<K, Vec<usize>> = HashMap::new();
    for (index, entry) in history.iter().enumerate() {
        parts.entry(part(entry)).or_default().push(index);
    }
    let mut witness = Vec::with_capacity(history.len());
    let mut unknown = false;
    for indices in parts.into_values() {
        let calls: Vec<Call<M::Input, M::Output>> =
            indices.iter().map(|&i| call(&history[i])).collect();
        match check(initial.clone(), &calls) {
            Verdict::Linearizable(order) => witness.extend(order.into_iter().map(|j| indices[j])),
            Verdict::NotLinearizable => return Verdict::NotLinearizable,
            Verdict::Unknown => unknown = true,
        }
    }
    if unknown {
        Verdict::Unknown
    } else {
        Verdict::Linearizable(witness)
    }
}

/// Deterministic random keys for the Zobrist fingerprint (splitmix64, two draws per call).
fn zobrist_keys(n: usize) -> Vec<u128> {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|_| (u128::from(next()) << 64) | u128::from(next()))
        .collect()
}

/// A read/write register holding an optional number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Register(pub Option<u64>);

/// A call on a [`Register`]; its output is the value read (`None` for writes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegisterOp {
    /// Sets the value.
    Write(u64),
    /// Reads the value.
    Read,
}

impl Model for Register {
    type Input = RegisterOp;
    type Output = Option<u64>;

    fn step(&self, input: &RegisterOp, output: &Option<u64>) -> Option<Self> {
        match input {
            RegisterOp::Write(v) => Some(Self(Some(*v))),
            RegisterOp::Read => (*output == self.0).then_some(*self),
        }
    }
}

/// A counter whose increments answer the new total.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counter(pub u64);

/// A call on a [`Counter`]: add this much (0 reads); the output is the total after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Add(pub u64);

impl Model for Counter {
    type Input = Add;
    type Output = u64;

    fn step(&self, input: &Add, output: &u64) -> Option<Self> {
        let total = self.0.checked_add(input.0)?;
        (total == *output).then_some(Self(total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_lost_updates_are_caught() {
        // Two concurrent increments both answering 1: one update was lost.
        let lost = [
            Call::new(0, 0, 10, Add(1), 1),
            Call::new(1, 0, 10, Add(1), 1),
        ];
        assert_eq!(check(Counter(0), &lost), Verdict::NotLinearizable);
        let fine = [
            Call::new(0, 0, 10, Add(1), 2),
            Call::new(1, 0, 10, Add(1), 1),
            Call::new(2, 11, 12, Add(0), 2),
        ];
        assert_eq!(
            check(Counter(0), &fine),
            Verdict::Linearizable(vec![1, 0, 2])
        );
    }

    #[test]
    fn real_time_order_is_respected() {
        // The read of 2 returned before the write of 2 was sent.
        let back_in_time = [
            Call::new(0, 0, 5, RegisterOp::Read, Some(2)),
            Call::new(1, 6, 9, RegisterOp::Write(2), None),
        ];
        assert_eq!(
            check(Register(None), &back_in_time),
            Verdict::NotLinearizable
        );
        // A value read after being overwritten, both writes having finished first.
        let overwritten = [
            Call::new(0, 0, 1, RegisterOp::Write(1), None),
            Call::new(0, 2, 3, RegisterOp::Write(2), None),
            Call::new(1, 4, 5, RegisterOp::Read, Some(1)),
        ];
        assert_eq!(
            check(Register(None), &overwritten),
            Verdict::NotLinearizable
        );
        assert_eq!(check(Register(None), &[]), Verdict::Linearizable(vec![]));
    }

    #[test]
    fn many_concurrent_calls_stay_tractable() {
        // 2,000 increments by 8 clients in overlapping waves; each answers a distinct total.
        let mut history = Vec::new();
        for i in 0..2_000u64 {
            let wave = i / 8;
            history.push(Call::new(
                (i % 8) as usize,
                wave * 10,
                wave * 10 + 15,
                Add(1),
                i + 1,
            ));
        }
        assert!(matches!(
            check(Counter(0), &history),
            Verdict::Linearizable(_)
        ));
    }
}
