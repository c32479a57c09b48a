//! The smallest useful workers-rs Worker: answers every request with a line of text. It exists to be
//! measured next to `examples/worker` (same toolchain, same worker-build, same `worker` profile) by
//! `scripts/worker-size.sh`.
#![cfg(target_arch = "wasm32")]

use worker::{Context, Env, Request, Response, Result, event};

#[event(fetch)]
async fn fetch(_request: Request, _env: Env, _ctx: Context) -> Result<Response> {
    Response::ok("hello from a Worker\n")
}
