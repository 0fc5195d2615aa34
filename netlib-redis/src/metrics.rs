//! The adapter's metrics, read from its threads' counters at each scrape, and its readiness
//! check (Redis connected), added to the server's [`Metrics`] by
//! [`Adapter::register_metrics`](netlib::Adapter::register_metrics).

use std::fmt;
use std::sync::Arc;

use netlib::prometheus_client::collector::Collector;
use netlib::prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use netlib::prometheus_client::metrics::counter::ConstCounter;
use netlib::prometheus_client::metrics::gauge::ConstGauge;
use netlib::Metrics;

use crate::shared::Shared;

/// Encodes the adapter's counters at each scrape.
struct RedisCollector(Arc<Shared>);

impl fmt::Debug for RedisCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCollector").finish_non_exhaustive()
    }
}

fn counter(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> fmt::Result {
    let m = ConstCounter::new(v);
    m.encode(enc.encode_descriptor(name, help, None, m.metric_type())?)
}

fn gauge<V>(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: V) -> fmt::Result
where
    ConstGauge<V>: EncodeMetric,
{
    let m = ConstGauge::new(v);
    m.encode(enc.encode_descriptor(name, help, None, m.metric_type())?)
}

impl Collector for RedisCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        let s = &self.0;
        let (published, refused) = s.traffic_counts();
        let e = &mut enc;
        gauge(
            e,
            "netlib_adapter_up",
            "1 while the Redis adapter is connected and takes traffic, else 0.",
            i64::from(s.is_up()),
        )?;
        counter(e, "netlib_adapter_published", "Envelopes this node handed to Redis to publish (room sends, sends to other nodes' channels, node messages).", published)?;
        counter(
            e,
            "netlib_adapter_received",
            "Messages received from Redis and events of the adapter itself (up, down) handed to the server.",
            s.received(),
        )?;
        counter(
            e,
            "netlib_adapter_refused",
            "Room sends, sends and node messages refused because Redis was down or not keeping up.",
            refused,
        )?;
        counter(e, "netlib_adapter_outages", "Times the adapter went down (its epoch: traffic handed over before an outage is dropped).", s.epoch())?;
        gauge(
            e,
            "netlib_adapter_queued",
            "Operations handed to the adapter's Redis thread and not yet carried out.",
            i64::try_from(s.queued()).unwrap_or(i64::MAX),
        )?;
        gauge(
            e,
            "netlib_adapter_held_bytes",
            "Bytes of room sends held while Redis is down, published when it is back.",
            i64::try_from(s.held_bytes()).unwrap_or(i64::MAX),
        )?;
        gauge(
            e,
            "netlib_adapter_inbox",
            "Items received from Redis waiting for the server's next pump.",
            i64::try_from(s.inbox_len()).unwrap_or(i64::MAX),
        )?;
        gauge(e, "netlib_adapter_round_trip_seconds", "The lag: the latest round trip of a probe through Redis to this node's subscriber (one a second), or, when longer, how long probes have gone unanswered (0 before the first).", s.round_trip_ns() as f64 / 1e9)?;
        Ok(())
    }
}

/// Registers the adapter's collector and its readiness check ("redis": up, or why not).
pub(crate) fn register(shared: &Arc<Shared>, metrics: &Metrics) {
    let collector = RedisCollector(shared.clone());
    metrics.with_registry(|r| r.register_collector(Box::new(collector)));
    let shared = shared.clone();
    metrics.add_check("redis", move || {
        if shared.is_up() {
            Ok(())
        } else {
            Err(shared.reason())
        }
    });
}
