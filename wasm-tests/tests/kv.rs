//! The KV conformance kit on wasm32: `MemoryKv` and every PoP of a `SimulatedKv`.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use edge_core::testing;
use edge_kv::{MemoryKv, SimulatedKv};
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen_test]
async fn memory_kv_conforms() {
    testing::kv::run_all(|clock| MemoryKv::builder().clock(clock).build()).await;
}

#[wasm_bindgen_test]
async fn simulated_kv_conforms_at_every_pop() {
    for pop in ["iad", "fra"] {
        testing::kv::run_all(|clock| {
            SimulatedKv::builder()
                .clock(clock)
                .pops(["iad", "fra"])
                .build()
                .pop(pop)
                .unwrap()
        })
        .await;
    }
}
