//! The `edge-*` crates' tests that run on `wasm32-unknown-unknown`, the Cloudflare Workers target.
//!
//! Each file in `tests/` is compiled only for wasm32 and run in Node by `wasm-bindgen-test-runner`:
//!
//! ```text
//! bash scripts/wasm-toolchain.sh --with-test-runner cargo test --target wasm32-unknown-unknown -p edge-wasm-tests
//! ```
//!
//! They prove that what the native suites check also holds where `std::time` panics and there are no
//! threads: JWT verification with `ring`, the KV conformance kit on `MemoryKv` and on every `SimulatedKv`
//! PoP, and `SystemClock` reading `Date.now()`.
