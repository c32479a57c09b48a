//! `SimulatedKv`: the KV kit at each PoP, determinism, partitions, convergence (proptest), and the seeds'
//! M × N over-admission story reproduced deterministically.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use edge_core::kv::PutOptions;
use edge_core::{KvStore, ManualClock, testing};
use edge_kv::{LinkLatency, PartitionMode, SimPop, SimulatedKv};
use futures::executor::block_on;
use proptest::prelude::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[tokio::test]
async fn conformance_kit_at_a_single_pop() {
    testing::kv::run_all(|clock| {
        SimulatedKv::builder()
            .clock(clock)
            .build()
            .pop("local")
            .unwrap()
    })
    .await;
}

#[tokio::test]
async fn conformance_kit_at_each_pop_of_many() {
    for pop in ["iad", "fra", "sin"] {
        testing::kv::run_all(|clock| {
            let kv = SimulatedKv::builder()
                .clock(clock)
                .pops(["iad", "fra", "sin"])
                .seed(9)
                .build();
            kv.pop(pop).unwrap()
        })
        .await;
    }
}

#[test]
fn unknown_pops_are_none() {
    assert!(
        SimulatedKv::builder()
            .pops(["a"])
            .build()
            .pop("b")
            .is_none()
    );
}

/// Writes at every PoP, reads at every PoP every 10 ms: the trace of what was seen where and when.
fn trace(seed: u64) -> Vec<(u64, String, Option<Bytes>)> {
    let clock = ManualClock::new();
    let kv = SimulatedKv::builder()
        .seed(seed)
        .clock(clock.clone())
        .pops(["iad", "fra", "sin", "syd"])
        .latency(LinkLatency::IN_CONTINENT)
        .link("iad", "syd", LinkLatency::GLOBAL)
        .link("fra", "syd", LinkLatency::GLOBAL)
        .build();
    let pops = kv.all_pops();
    let mut seen = Vec::new();
    block_on(async {
        for step in 0..60u64 {
            let writer = &pops[(step % 4) as usize];
            if step % 3 == 0 {
                writer
                    .put("k", Bytes::from(format!("{step}")), PutOptions::new())
                    .await
                    .unwrap();
            }
            for pop in &pops {
                seen.push((step, pop.name().to_owned(), pop.get("k").await.unwrap()));
            }
            clock.advance(Duration::from_millis(10));
        }
    });
    seen
}

#[test]
fn same_seed_same_history_bit_for_bit() {
    assert_eq!(trace(42), trace(42));
    assert_ne!(
        trace(42),
        trace(43),
        "the seed drives the replication delays"
    );
}

#[test]
fn hold_partitions_delay_and_drop_partitions_lose_replication() {
    let clock = ManualClock::new();
    let kv = SimulatedKv::builder()
        .clock(clock.clone())
        .pops(["a", "b", "c"])
        .latency(LinkLatency::fixed(Duration::from_millis(50)))
        .build();
    let [a, bpop, c]: [SimPop; 3] = kv.all_pops().try_into().unwrap();
    block_on(async {
        kv.partition(&["a"], &["b"], PartitionMode::Hold);
        kv.partition(&["a"], &["c"], PartitionMode::Drop);
        a.put("k", b("v1"), PutOptions::new()).await.unwrap();
        clock.advance(Duration::from_secs(5));
        assert_eq!(bpop.get("k").await.unwrap(), None, "held");
        assert_eq!(c.get("k").await.unwrap(), None, "dropped");
        assert_eq!(kv.pending_replications(), 1, "the held message waits");
        assert_eq!(kv.time_to_convergence(), None);

        kv.heal_all();
        assert_eq!(
            bpop.get("k").await.unwrap(),
            Some(b("v1")),
            "held replication lands on heal"
        );
        assert_eq!(
            c.get("k").await.unwrap(),
            None,
            "dropped replication is gone"
        );
        assert_eq!(kv.divergent_keys(), ["k"]);
        assert_eq!(
            kv.time_to_convergence(),
            None,
            "nothing in flight will fix c"
        );

        // Writing the key again repairs the replicas.
        bpop.put("k", b("v2"), PutOptions::new()).await.unwrap();
        assert_eq!(kv.time_to_convergence(), Some(Duration::from_millis(50)));
        clock.advance(Duration::from_millis(50));
        assert!(kv.divergent_keys().is_empty());
        assert_eq!(kv.pending_replications(), 0);
    });
}

/// The seeds' story: a limit of N requests per window, checked by each PoP against its own replica of a KV
/// counter. An attacker who spreads requests over M PoPs faster than replication gets M × N through.
#[test]
fn naive_per_pop_limits_over_admit_m_times_n() {
    const M: usize = 5;
    const N: u64 = 10;

    async fn naive_limited(pop: &SimPop) -> bool {
        let used: u64 = match pop.get("ratelimit:attacker").await.unwrap() {
            Some(raw) => std::str::from_utf8(&raw).unwrap().parse().unwrap(),
            None => 0,
        };
        if used >= N {
            return false;
        }
        pop.put(
            "ratelimit:attacker",
            Bytes::from((used + 1).to_string()),
            PutOptions::new(),
        )
        .await
        .unwrap();
        true
    }

    let run = |spacing: Duration| {
        let clock = ManualClock::new();
        let names: Vec<String> = (0..M).map(|i| format!("pop{i}")).collect();
        let kv = SimulatedKv::builder()
            .seed(1)
            .clock(clock.clone())
            .pops(names)
            .latency(LinkLatency::IN_CONTINENT)
            .build();
        let pops = kv.all_pops();
        let mut admitted = 0;
        block_on(async {
            // 200 requests, round-robin over the PoPs.
            for i in 0..200 {
                if naive_limited(&pops[i % M]).await {
                    admitted += 1;
                }
                clock.advance(spacing);
            }
        });
        admitted
    };

    // Faster than replication (1 ms apart, 40–60 ms links): every PoP admits its own N.
    assert_eq!(run(Duration::from_millis(1)), M as u64 * N);
    // Slower than replication (100 ms apart): the PoPs see each other's counts and the limit holds.
    assert_eq!(run(Duration::from_millis(100)), N);
}

#[derive(Clone, Debug)]
enum Op {
    Put { pop: usize, key: u8, value: u8 },
    Delete { pop: usize, key: u8 },
    Advance(u64),
    Partition { a: usize, b: usize },
    Heal { a: usize, b: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..4, 0u8..4, any::<u8>()).prop_map(|(pop, key, value)| Op::Put { pop, key, value }),
        1 => (0usize..4, 0u8..4).prop_map(|(pop, key)| Op::Delete { pop, key }),
        3 => (0u64..400).prop_map(Op::Advance),
        1 => (0usize..4, 0usize..4).prop_map(|(a, b)| Op::Partition { a, b }),
        1 => (0usize..4, 0usize..4).prop_map(|(a, b)| Op::Heal { a, b }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Whatever the writes and (holding) partitions, once every partition heals and the replication in
    /// flight lands, every PoP holds the same data: the last write of each key.
    #[test]
    fn replicas_converge_after_partitions_heal(ops in prop::collection::vec(op(), 1..80), seed in any::<u64>()) {
        let clock = ManualClock::new();
        let names = ["w", "x", "y", "z"];
        let kv = SimulatedKv::builder().seed(seed).clock(clock.clone()).pops(names)
            .latency(LinkLatency::IN_CONTINENT).link("w", "z", LinkLatency::GLOBAL).build();
        let pops = kv.all_pops();
        let mut last_write: std::collections::BTreeMap<u8, Option<u8>> = Default::default();
        block_on(async {
            for op in ops {
                match op {
                    Op::Put { pop, key, value } => {
                        pops[pop].put(&format!("k{key}"), Bytes::from(vec![value]), PutOptions::new()).await.unwrap();
                        last_write.insert(key, Some(value));
                    }
                    Op::Delete { pop, key } => {
                        pops[pop].delete(&format!("k{key}")).await.unwrap();
                        last_write.insert(key, None);
                    }
                    Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                    Op::Partition { a, b } => kv.partition(&[names[a]], &[names[b]], PartitionMode::Hold),
                    Op::Heal { a, b } => kv.heal(&[names[a]], &[names[b]]),
                }
            }
            kv.heal_all();
            let wait = kv.time_to_convergence();
            prop_assert!(wait.is_some(), "held partitions healed: convergence must be reachable");
            clock.advance(wait.unwrap_or_default());
            prop_assert_eq!(kv.divergent_keys(), Vec::<String>::new());
            prop_assert_eq!(kv.pending_replications(), 0);
            for pop in &pops {
                for (key, expected) in &last_write {
                    let got = pop.get(&format!("k{key}")).await.unwrap();
                    prop_assert_eq!(got, expected.map(|v| Bytes::from(vec![v])), "{} k{}", pop.name(), key);
                }
            }
            Ok(())
        })?;
    }
}
