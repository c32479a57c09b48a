//! [`WorkersNamespace`]: a Durable Object namespace binding as an [`ObjectNamespace`](edge_core::durable::ObjectNamespace).

use edge_core::durable::{LocationHint, ObjectId, ObjectNamespace};
use edge_core::host::workers::{request_to_web_sys, response_from_web_sys};
use edge_core::{Body, Error, ErrorKind};
use http::{Request, Response};

/// A Durable Object namespace binding as an [`ObjectNamespace`]: the Worker side of calling objects.
///
/// Ids map by name: [`ObjectId`]s the SDK makes from names go to Cloudflare's `idFromName` of the same
/// name; other ids (unique ones) go to `idFromName` of their text, which is stable too.
#[derive(Clone)]
pub struct WorkersNamespace {
    namespace: worker::ObjectNamespace,
    hint: Option<LocationHint>,
}

impl std::fmt::Debug for WorkersNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkersNamespace")
            .field("hint", &self.hint)
            .finish_non_exhaustive()
    }
}

impl WorkersNamespace {
    /// The namespace bound as `binding`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] when no Durable Object namespace is bound under that name.
    pub fn from_env(env: &worker::Env, binding: &str) -> Result<Self, Error> {
        let namespace = env.durable_object(binding).map_err(|e| {
            Error::new(
                ErrorKind::NotFound,
                format!("no Durable Object namespace is bound as `{binding}`: {e}"),
            )
        })?;
        Ok(Self {
            namespace,
            hint: None,
        })
    }

    /// Creates new objects near `hint` (Cloudflare's `locationHint`; objects that exist stay where they are).
    #[must_use]
    pub fn with_location_hint(mut self, hint: LocationHint) -> Self {
        self.hint = Some(hint);
        self
    }
}

impl ObjectNamespace for WorkersNamespace {
    async fn fetch(&self, id: &ObjectId, request: Request<Body>) -> Result<Response<Body>, Error> {
        let name = id.name().unwrap_or(id.as_str());
        let cf_id = self
            .namespace
            .id_from_name(name)
            .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("durable object id: {e}")))?;
        let stub = match self.hint {
            Some(hint) => cf_id.get_stub_with_location_hint(hint.code()),
            None => cf_id.get_stub(),
        }
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("durable object stub: {e}")))?;
        let request = request_to_web_sys(absolute(request)?)?;
        let response = stub
            .fetch_with_request(worker::Request::from(request))
            .await
            .map_err(|e| Error::new(ErrorKind::Unavailable, format!("durable object call: {e}")))?;
        let response: web_sys::Response = response.into();
        response_from_web_sys(response)
    }
}

/// Stubs need absolute URLs; a path alone gets a placeholder origin (objects see only the path).
fn absolute(mut request: Request<Body>) -> Result<Request<Body>, Error> {
    if request.uri().scheme().is_none() {
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        *request.uri_mut() = format!("https://durable-object.invalid{path}")
            .parse()
            .map_err(|_| Error::new(ErrorKind::InvalidInput, "durable object request URL"))?;
    }
    Ok(request)
}
