//! The Worker's Durable Object classes: the pipeline's counter and room objects, unchanged, run by
//! [`edge_do::durable_object!`]; and (feature `conformance`) two probes the workerd tests use: an alarm,
//! and the storage kit.

use edge_do::Room;
use edge_do::storage::ObjectStorage;
use edge_do::workers::{WorkersSockets, WorkersStorage};
use edge_example_pipeline::objects::ExactCounter;

edge_do::durable_object!(
    CounterObject,
    ExactCounter<ObjectStorage<WorkersStorage>>,
    |state| ExactCounter(state.storage)
);

edge_do::durable_object!(
    RoomObject,
    Room<ObjectStorage<WorkersStorage>, WorkersSockets>,
    |state| Room::new(state.storage, state.sockets)
);

#[cfg(feature = "conformance")]
mod probes {
    use std::time::Duration;

    use bytes::Bytes;
    use edge_core::durable::{AlarmInfo, DurableObject, Storage};
    use edge_core::{Body, Clock, Error, ErrorKind, SystemClock};
    use edge_do::storage::ObjectStorage;
    use edge_do::workers::WorkersStorage;
    use http::{Method, Request, Response};

    /// An object whose alarm counts how often it fired: `POST` sets the alarm 50 ms ahead, `GET` answers the
    /// count. Proves alarms reach an SDK object through the bridge.
    pub(crate) struct AlarmProbe(ObjectStorage<WorkersStorage>);

    impl AlarmProbe {
        async fn fired(&self) -> Result<u64, Error> {
            Ok(match self.0.get("fired").await? {
                None => 0,
                Some(raw) => std::str::from_utf8(&raw)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| Error::new(ErrorKind::Corrupt, "fired is not a number"))?,
            })
        }
    }

    impl DurableObject for AlarmProbe {
        async fn fetch(&self, request: Request<Body>) -> Result<Response<Body>, Error> {
            if request.method() == Method::POST {
                let at = SystemClock::new().wall_time() + Duration::from_millis(50);
                self.0.set_alarm(at).await?;
            }
            let fired = self.fired().await?;
            let alarm = self.0.get_alarm().await?.is_some();
            Ok(Response::new(Body::from(
                serde_json::json!({ "fired": fired, "alarm_set": alarm }).to_string(),
            )))
        }

        async fn alarm(&self, _info: AlarmInfo) -> Result<(), Error> {
            let fired = self.fired().await?.saturating_add(1);
            self.0.put("fired", Bytes::from(fired.to_string())).await
        }
    }

    edge_do::durable_object!(AlarmProbeObject, AlarmProbe, |state| AlarmProbe(
        state.storage
    ));

    /// Runs the durable-object storage conformance kit against this object's real storage.
    pub(crate) struct StorageKit(WorkersStorage);

    impl DurableObject for StorageKit {
        async fn fetch(&self, _request: Request<Body>) -> Result<Response<Body>, Error> {
            let cases = crate::conformance::durable_storage(&self.0).await?;
            Ok(crate::conformance::passed("durable-object storage", &cases))
        }
    }

    edge_do::durable_object!(StorageKitObject, StorageKit, |state| StorageKit(
        state.storage.backing().clone()
    ));
}
