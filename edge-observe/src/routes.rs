//! [`Routes`]: request paths reduced to a small, fixed set of route names, for span names and metric labels.
//!
//! A label set keyed by raw paths grows with every URL a client invents; OpenTelemetry's HTTP conventions
//! put the *route* (`/api/products/{id}`), not the path, into span names and `http.route`. The edge does not
//! see the application's router, so the routes are given: each a prefix (`/api/`) or an exact path (`/`),
//! the longest match winning. Paths that match none are [`Routes::OTHER`].
//!
//! ```
//! use edge_observe::Routes;
//!
//! let routes = Routes::new().prefix("/api/").prefix("/api/account").exact("/");
//! assert_eq!(routes.classify("/api/products?q=1"), "/api/");
//! assert_eq!(routes.classify("/api/account/settings"), "/api/account");
//! assert_eq!(routes.classify("/"), "/");
//! assert_eq!(routes.classify("/index.html"), Routes::OTHER);
//! ```

use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Match {
    Prefix,
    Exact,
}

/// The routes a layer names requests by. Cheap to clone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes {
    routes: Arc<Vec<(String, Match)>>,
}

impl Routes {
    /// The name of paths that match no route.
    pub const OTHER: &'static str = "other";

    /// No routes: every path is [`Routes::OTHER`].
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route matching every path that starts with `prefix`.
    #[must_use]
    pub fn prefix(self, prefix: impl Into<String>) -> Self {
        self.with(prefix.into(), Match::Prefix)
    }

    /// Adds a route matching `path` exactly.
    #[must_use]
    pub fn exact(self, path: impl Into<String>) -> Self {
        self.with(path.into(), Match::Exact)
    }

    fn with(self, route: String, kind: Match) -> Self {
        let mut routes = Arc::unwrap_or_clone(self.routes);
        routes.push((route, kind));
        // Longest first, so the first match is the most specific.
        routes.sort_by_key(|route| std::cmp::Reverse(route.0.len()));
        Self {
            routes: Arc::new(routes),
        }
    }

    /// Whether any route was added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The route `path` (with or without its query) belongs to.
    #[must_use]
    pub fn classify(&self, path: &str) -> &str {
        self.name(self.position(path))
    }

    /// Where in this set the route of `path` is (`None`: [`Routes::OTHER`]); [`name`](Self::name) turns it
    /// back into the route. For holding on to a classification without borrowing.
    #[must_use]
    pub fn position(&self, path: &str) -> Option<usize> {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        self.routes.iter().position(|(route, kind)| match kind {
            Match::Prefix => path.starts_with(route.as_str()),
            Match::Exact => path == route,
        })
    }

    /// The route at `position` (from [`position`](Self::position)); [`Routes::OTHER`] for `None` or a
    /// position this set does not have.
    #[must_use]
    pub fn name(&self, position: Option<usize>) -> &str {
        position
            .and_then(|i| self.routes.get(i))
            .map_or(Self::OTHER, |(route, _)| route.as_str())
    }
}
