//! The app as it was before the SDK: a to-do list with its own state, JSON routes and a static page.
//! Nothing in this file knows about `edge`; the one thing it reads from the SDK is who the caller is
//! ([`Caller`]), which an app without the SDK would have taken from its own session layer.

use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};

/// The app's state: the to-do list.
#[derive(Clone, Debug, Default)]
pub struct AppState {
    todos: Arc<Mutex<Vec<Todo>>>,
}

/// One to-do item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Todo {
    /// Its number.
    pub id: u64,
    /// What to do.
    pub title: String,
    /// Who added it.
    pub owner: String,
}

/// The body of `POST /api/todos`.
#[derive(Debug, Deserialize)]
pub struct NewTodo {
    /// What to do.
    pub title: String,
}

/// The claims the app reads from the caller's token.
#[derive(Clone, Debug, Deserialize)]
pub struct Caller {
    /// The caller.
    pub sub: String,
}

/// The home page: static HTML, with the greeting included from a fragment.
pub const INDEX: &str = "<!doctype html><html><head><title>To do</title></head><body>\
<h1>To do</h1><esi:include src=\"/fragments/greeting\"/><ul id=\"todos\"></ul></body></html>";

/// The routes anyone may call: the page and the list (which any cache may keep for 5 seconds).
pub fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route("/api/todos", get(list))
}

/// The routes that need a signed-in caller: adding an item, and who am I.
pub fn private_routes() -> Router<AppState> {
    Router::new()
        .route("/api/todos", axum::routing::post(add))
        .route("/api/me", get(me))
}

/// The HTML fragments the page includes.
pub fn fragments() -> Router {
    Router::new().route(
        "/fragments/greeting",
        get(|| async {
            (
                [(header::CACHE_CONTROL, "public, max-age=60")],
                Html("<p class=\"greeting\">Hello from a fragment</p>"),
            )
        }),
    )
}

#[tracing::instrument(skip_all)]
async fn list(State(state): State<AppState>) -> impl IntoResponse {
    let todos = state
        .todos
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    tracing::info!(count = todos.len(), "listed");
    ([(header::CACHE_CONTROL, "public, max-age=5")], Json(todos))
}

#[tracing::instrument(skip_all, fields(owner = %caller.sub))]
async fn add(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(new): Json<NewTodo>,
) -> impl IntoResponse {
    let mut todos = state.todos.lock().unwrap_or_else(PoisonError::into_inner);
    let todo = Todo {
        id: todos.len() as u64 + 1,
        title: new.title,
        owner: caller.sub,
    };
    todos.push(todo.clone());
    (StatusCode::CREATED, Json(todo))
}

async fn me(Extension(caller): Extension<Caller>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "sub": caller.sub }))
}
