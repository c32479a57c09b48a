//! Settings of the example hosts, read from flags and environment variables; all have working defaults.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use edge_auth::ratelimit::Quota;
use edge_core::host::tokio::ServerLimits;
use http::Uri;

use crate::pipeline::RateLimits;

/// What an example host needs to know to start.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// Where the edge listens (default `127.0.0.1:8787`).
    pub listen: SocketAddr,
    /// The origin to proxy to; `None` starts the embedded demo origin on an ephemeral loopback port.
    pub origin: Option<Uri>,
    /// How long to wait for the origin's response head before answering `504` (default 5 s).
    pub origin_timeout: Duration,
    /// How long the origin's response body may take to end after its head (default 30 s): a cache fill
    /// past it fails with `504`, a body streaming through is cut off.
    pub origin_body_timeout: Duration,
    /// Keep the edge's KV (flags, …) in this Redis instead of in memory.
    pub redis_url: Option<String>,
    /// Keep the durable objects' SQLite databases in this directory instead of in memory.
    pub objects_dir: Option<PathBuf>,
    /// Answer `POST /_edge/purge` with `Authorization: Bearer <token>` (off without one).
    pub purge_token: Option<String>,
    /// Export spans and metrics to the OTLP/HTTP collector at this URL (`http://127.0.0.1:4318`).
    pub otlp_endpoint: Option<String>,
    /// Export as OTLP JSON instead of protobuf.
    pub otlp_json: bool,
    /// Write one JSON line per request to standard output.
    pub request_log: bool,
    /// Timeouts and caps on client connections.
    pub server: ServerLimits,
    /// The per-client quotas.
    pub limits: RateLimits,
    /// Which WAF rules run.
    pub waf: WafChoice,
}

/// Which WAF rules the gateway runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WafChoice {
    /// The built-in detectors (the default).
    #[default]
    Lite,
    /// The OWASP Core Rule Set from `dir` (a CRS 4 release: `crs-setup.conf` and `rules/`), at a
    /// paranoia level from 1 to 4.
    Crs {
        /// The CRS directory.
        dir: PathBuf,
        /// The blocking paranoia level.
        paranoia: u8,
    },
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8787),
            origin: None,
            origin_timeout: Duration::from_secs(5),
            origin_body_timeout: Duration::from_secs(30),
            redis_url: None,
            objects_dir: None,
            purge_token: None,
            otlp_endpoint: None,
            otlp_json: false,
            request_log: false,
            server: ServerLimits::default(),
            limits: RateLimits::default(),
            waf: WafChoice::Lite,
        }
    }
}

/// Usage text for `--help`.
pub const USAGE: &str = "\
options (each also read from the environment variable shown):
  --port <n>               port on 127.0.0.1 to listen on          [EDGE_PORT, default 8787]
  --listen <ip:port>       full listen address                     [EDGE_LISTEN]
  --origin <url>           proxy to this origin instead of the embedded demo origin [EDGE_ORIGIN]
  --origin-timeout-ms <n>  origin response deadline                [EDGE_ORIGIN_TIMEOUT_MS, default 5000]
  --origin-body-timeout-ms <n>  origin body deadline, from its head [EDGE_ORIGIN_BODY_TIMEOUT_MS, default 30000]
  --redis-url <url>        keep the edge's KV in Redis, not memory [REDIS_URL]
  --objects-dir <dir>      keep durable objects in SQLite files here, not memory [EDGE_OBJECTS_DIR]
  --purge-token <token>    enable POST /_edge/purge with this bearer token [EDGE_PURGE_TOKEN]
  --otlp-endpoint <url>    export spans and metrics over OTLP/HTTP to this collector [OTEL_EXPORTER_OTLP_ENDPOINT]
  --otlp-protocol <p>      http/protobuf or http/json [OTEL_EXPORTER_OTLP_PROTOCOL, default http/protobuf]
  --request-log <where>    stdout: one JSON line per request; off [EDGE_REQUEST_LOG, default off]
client connections:
  --header-timeout-ms <n>  a request head (and a kept-alive connection's wait for one) may take this long
                                                                   [EDGE_HEADER_TIMEOUT_MS, default 15000]
  --request-timeout-ms <n> a response head must start within this, else 408 [EDGE_REQUEST_TIMEOUT_MS, default 30000]
  --max-connections <n>    connections served at once; more wait   [EDGE_MAX_CONNECTIONS, default 1024]
  --max-body-bytes <n>     largest Content-Length accepted, else 413 [EDGE_MAX_BODY_BYTES, default 16777216]
per-client quotas, each <count>/<period>[,burst=<n>] with period s, min, h or <n>s; or `off`:
  --rate-pages <quota>     requests outside /api/                  [EDGE_RATE_PAGES, default 600/min,burst=120]
  --rate-api <quota>       requests under /api/                    [EDGE_RATE_API, default 120/min,burst=20]
  --waf-penalty <quota>    WAF offences before a client is refused [EDGE_WAF_PENALTY, default 5/600s]
  --rate-limits off        turns all three off                     [EDGE_RATE_LIMITS]
web application firewall:
  --waf <lite|crs>         built-in detectors, or the OWASP Core Rule Set [EDGE_WAF, default lite]
  --crs-dir <dir>          the CRS 4 release to load (crs-setup.conf, rules/) [EDGE_CRS_DIR]
  --paranoia <1-4>         CRS paranoia level                      [EDGE_WAF_PARANOIA, default 1]";

impl GatewayConfig {
    /// Proxies to `origin` instead of starting the demo origin.
    #[must_use]
    pub fn with_origin(mut self, origin: Uri) -> Self {
        self.origin = Some(origin);
        self
    }

    /// Enables the purge endpoint with `token`.
    #[must_use]
    pub fn with_purge_token(mut self, token: impl Into<String>) -> Self {
        self.purge_token = Some(token.into());
        self
    }

    /// Exports spans and metrics to the OTLP/HTTP collector at `endpoint`, as JSON when `json`.
    #[must_use]
    pub fn with_otlp(mut self, endpoint: impl Into<String>, json: bool) -> Self {
        self.otlp_endpoint = Some(endpoint.into());
        self.otlp_json = json;
        self
    }

    /// Keeps the edge's KV in the Redis at `url`.
    #[must_use]
    pub fn with_redis(mut self, url: impl Into<String>) -> Self {
        self.redis_url = Some(url.into());
        self
    }

    /// Sets the origin response deadline.
    #[must_use]
    pub const fn with_origin_timeout(mut self, timeout: Duration) -> Self {
        self.origin_timeout = timeout;
        self
    }

    /// Reads the process's environment and arguments. Flags win over environment variables.
    ///
    /// # Errors
    ///
    /// A message naming the bad setting.
    pub fn from_env_and_args() -> Result<Self, String> {
        let env = |name: &str| std::env::var(name).ok();
        Self::parse(env, std::env::args().skip(1))
    }

    /// Reads settings from `env` and `args`; a testable core of [`from_env_and_args`](Self::from_env_and_args).
    ///
    /// # Errors
    ///
    /// A message naming the bad setting.
    pub fn parse(
        env: impl Fn(&str) -> Option<String>,
        args: impl IntoIterator<Item = String>,
    ) -> Result<Self, String> {
        let mut config = Self::default();
        let mut settings: Vec<(String, String)> = [
            "EDGE_PORT",
            "EDGE_LISTEN",
            "EDGE_ORIGIN",
            "EDGE_ORIGIN_TIMEOUT_MS",
            "EDGE_ORIGIN_BODY_TIMEOUT_MS",
            "REDIS_URL",
            "EDGE_OBJECTS_DIR",
            "EDGE_PURGE_TOKEN",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "EDGE_REQUEST_LOG",
            "EDGE_HEADER_TIMEOUT_MS",
            "EDGE_REQUEST_TIMEOUT_MS",
            "EDGE_MAX_CONNECTIONS",
            "EDGE_MAX_BODY_BYTES",
            "EDGE_RATE_LIMITS",
            "EDGE_RATE_PAGES",
            "EDGE_RATE_API",
            "EDGE_WAF_PENALTY",
            "EDGE_WAF",
            "EDGE_CRS_DIR",
            "EDGE_WAF_PARANOIA",
        ]
        .into_iter()
        .filter_map(|name| env(name).map(|value| (name.to_owned(), value)))
        .collect();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let name = match flag.as_str() {
                "--port" => "EDGE_PORT",
                "--listen" => "EDGE_LISTEN",
                "--origin" => "EDGE_ORIGIN",
                "--origin-timeout-ms" => "EDGE_ORIGIN_TIMEOUT_MS",
                "--origin-body-timeout-ms" => "EDGE_ORIGIN_BODY_TIMEOUT_MS",
                "--redis-url" => "REDIS_URL",
                "--objects-dir" => "EDGE_OBJECTS_DIR",
                "--purge-token" => "EDGE_PURGE_TOKEN",
                "--otlp-endpoint" => "OTEL_EXPORTER_OTLP_ENDPOINT",
                "--otlp-protocol" => "OTEL_EXPORTER_OTLP_PROTOCOL",
                "--request-log" => "EDGE_REQUEST_LOG",
                "--header-timeout-ms" => "EDGE_HEADER_TIMEOUT_MS",
                "--request-timeout-ms" => "EDGE_REQUEST_TIMEOUT_MS",
                "--max-connections" => "EDGE_MAX_CONNECTIONS",
                "--max-body-bytes" => "EDGE_MAX_BODY_BYTES",
                "--rate-limits" => "EDGE_RATE_LIMITS",
                "--rate-pages" => "EDGE_RATE_PAGES",
                "--rate-api" => "EDGE_RATE_API",
                "--waf-penalty" => "EDGE_WAF_PENALTY",
                "--waf" => "EDGE_WAF",
                "--crs-dir" => "EDGE_CRS_DIR",
                "--paranoia" => "EDGE_WAF_PARANOIA",
                other => return Err(format!("unknown option `{other}`\n{USAGE}")),
            };
            let value = args
                .next()
                .ok_or_else(|| format!("`{flag}` needs a value"))?;
            settings.push((name.to_owned(), value));
        }
        let (mut waf, mut crs_dir, mut paranoia) = (None, None, 1u8);
        for (name, value) in settings {
            match name.as_str() {
                "EDGE_WAF" => {
                    waf = match value.as_str() {
                        "lite" | "" => None,
                        "crs" => Some(()),
                        other => return Err(format!("EDGE_WAF `{other}` is not lite or crs")),
                    };
                }
                "EDGE_CRS_DIR" => {
                    crs_dir = Some(PathBuf::from(value)).filter(|d| !d.as_os_str().is_empty())
                }
                "EDGE_WAF_PARANOIA" => {
                    paranoia = value
                        .trim()
                        .parse()
                        .ok()
                        .filter(|p| (1..=4).contains(p))
                        .ok_or_else(|| {
                            format!("EDGE_WAF_PARANOIA `{value}` is not 1, 2, 3 or 4")
                        })?;
                }
                "EDGE_PORT" => {
                    let port = value
                        .parse()
                        .map_err(|_| format!("port `{value}` is not a number from 0 to 65535"))?;
                    config.listen.set_port(port);
                }
                "EDGE_LISTEN" => {
                    config.listen = value
                        .parse()
                        .map_err(|_| format!("listen address `{value}` is not ip:port"))?;
                }
                "EDGE_ORIGIN" => {
                    let uri: Uri = value
                        .parse()
                        .map_err(|_| format!("origin `{value}` is not a url"))?;
                    if uri.scheme().is_none() || uri.authority().is_none() {
                        return Err(format!(
                            "origin `{value}` must be an absolute url like http://127.0.0.1:3000"
                        ));
                    }
                    config.origin = Some(uri);
                }
                "REDIS_URL" => config.redis_url = Some(value).filter(|url| !url.is_empty()),
                "EDGE_PURGE_TOKEN" => config.purge_token = Some(value).filter(|t| !t.is_empty()),
                "OTEL_EXPORTER_OTLP_ENDPOINT" => {
                    config.otlp_endpoint = Some(value).filter(|e| !e.is_empty());
                }
                "OTEL_EXPORTER_OTLP_PROTOCOL" => {
                    config.otlp_json = match value.as_str() {
                        "http/json" => true,
                        "http/protobuf" | "" => false,
                        other => {
                            return Err(format!(
                                "OTLP protocol `{other}` is not http/protobuf or http/json"
                            ));
                        }
                    };
                }
                "EDGE_REQUEST_LOG" => {
                    config.request_log = match value.as_str() {
                        "stdout" => true,
                        "off" | "" => false,
                        other => return Err(format!("request log `{other}` is not stdout or off")),
                    };
                }
                "EDGE_OBJECTS_DIR" => {
                    config.objects_dir =
                        Some(PathBuf::from(value)).filter(|d| !d.as_os_str().is_empty());
                }
                "EDGE_ORIGIN_BODY_TIMEOUT_MS" => {
                    config.origin_body_timeout = millis(&name, &value)?;
                }
                "EDGE_HEADER_TIMEOUT_MS" => {
                    config.server.header_read_timeout = millis(&name, &value)?;
                }
                "EDGE_REQUEST_TIMEOUT_MS" => {
                    config.server.request_timeout = millis(&name, &value)?;
                }
                "EDGE_MAX_CONNECTIONS" => {
                    let n = number(&name, &value)?;
                    config.server = config
                        .server
                        .with_max_connections(usize::try_from(n).unwrap_or(usize::MAX));
                }
                "EDGE_MAX_BODY_BYTES" => {
                    config.server.max_request_body = number(&name, &value)?;
                }
                "EDGE_RATE_LIMITS" => match value.as_str() {
                    "off" => config.limits = RateLimits::off(),
                    "on" | "" => {}
                    other => return Err(format!("EDGE_RATE_LIMITS `{other}` is not on or off")),
                },
                "EDGE_RATE_PAGES" => config.limits.pages = quota(&name, &value)?,
                "EDGE_RATE_API" => config.limits.api = quota(&name, &value)?,
                "EDGE_WAF_PENALTY" => config.limits.waf_penalty = quota(&name, &value)?,
                _ => {
                    let ms: u64 = value
                        .parse()
                        .map_err(|_| format!("origin timeout `{value}` is not milliseconds"))?;
                    config.origin_timeout = Duration::from_millis(ms);
                }
            }
        }
        if waf.is_some() {
            let dir = crs_dir.ok_or("--waf crs needs --crs-dir (EDGE_CRS_DIR): a CRS 4 release")?;
            config.waf = WafChoice::Crs { dir, paranoia };
        }
        Ok(config)
    }
}

fn number(name: &str, value: &str) -> Result<u64, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{name} `{value}` is not a whole number"))
}

fn millis(name: &str, value: &str) -> Result<Duration, String> {
    match number(name, value)? {
        0 => Err(format!("{name} must be at least 1 ms")),
        ms => Ok(Duration::from_millis(ms)),
    }
}

/// A quota as `<count>/<period>[,burst=<n>]` (period `s`, `min`, `h` or `<n>s`), or `off`.
pub fn quota(name: &str, value: &str) -> Result<Option<Quota>, String> {
    let value = value.trim();
    if value == "off" {
        return Ok(None);
    }
    let bad =
        |why: &str| format!("{name} `{value}` is not a quota like 600/min,burst=120 or off: {why}");
    let (rate, burst) = match value.split_once(',') {
        Some((rate, burst)) => {
            let burst = burst
                .trim()
                .strip_prefix("burst=")
                .ok_or_else(|| bad("only burst=<n> may follow the rate"))?;
            (rate, Some(burst))
        }
        None => (value, None),
    };
    let (count, period) = rate.split_once('/').ok_or_else(|| bad("no `/`"))?;
    let count: u32 = count.trim().parse().map_err(|_| bad("the count"))?;
    let period = match period.trim() {
        "s" | "sec" => Duration::from_secs(1),
        "min" | "m" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        seconds => Duration::from_secs(
            seconds
                .strip_suffix('s')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| bad("the period"))?,
        ),
    };
    let quota = Quota::new(count, period).map_err(|e| bad(&e.to_string()))?;
    let quota = match burst {
        Some(burst) => {
            let burst: u32 = burst.parse().map_err(|_| bad("the burst"))?;
            quota.with_burst(burst).map_err(|e| bad(&e.to_string()))?
        }
        None => quota,
    };
    Ok(Some(quota))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(env: &[(&str, &str)], args: &[&str]) -> Result<GatewayConfig, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        GatewayConfig::parse(
            |name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            args.iter().map(|a| (*a).to_owned()),
        )
    }

    #[test]
    fn the_waf_is_chosen_by_flag_or_environment() {
        assert_eq!(parse(&[], &[]).unwrap().waf, WafChoice::Lite);
        let config = parse(
            &[("EDGE_CRS_DIR", "/etc/crs4")],
            &["--waf", "crs", "--paranoia", "2"],
        )
        .unwrap();
        assert_eq!(
            config.waf,
            WafChoice::Crs {
                dir: PathBuf::from("/etc/crs4"),
                paranoia: 2
            }
        );
        assert!(
            parse(&[], &["--waf", "crs"])
                .unwrap_err()
                .contains("--crs-dir")
        );
        assert!(parse(&[("EDGE_WAF", "modsec")], &[]).is_err());
        assert!(parse(&[], &["--paranoia", "5"]).is_err());
    }

    #[test]
    fn defaults_env_and_flags() {
        assert_eq!(parse(&[], &[]).unwrap(), GatewayConfig::default());
        let config = parse(&[("EDGE_PORT", "9000")], &["--origin-timeout-ms", "250"]).unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.origin_timeout, Duration::from_millis(250));
        let config = parse(&[("EDGE_PORT", "9000")], &["--port", "9001"]).unwrap();
        assert_eq!(config.listen.port(), 9001, "flags win");
        let config = parse(
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")],
            &["--otlp-protocol", "http/json", "--request-log", "stdout"],
        )
        .unwrap();
        assert_eq!(
            config.otlp_endpoint.as_deref(),
            Some("http://127.0.0.1:4318")
        );
        assert!(config.otlp_json && config.request_log);
        assert!(parse(&[], &["--otlp-protocol", "grpc"]).is_err());
        let config = parse(&[], &["--origin", "http://127.0.0.1:3000"]).unwrap();
        assert_eq!(config.origin.unwrap().to_string(), "http://127.0.0.1:3000/");
    }

    #[test]
    fn server_limits_and_quotas() {
        let config = parse(
            &[("EDGE_MAX_CONNECTIONS", "64"), ("EDGE_RATE_API", "off")],
            &[
                "--header-timeout-ms",
                "2500",
                "--rate-pages",
                "100/10s,burst=5",
                "--waf-penalty",
                "3/h",
            ],
        )
        .unwrap();
        assert_eq!(config.server.max_connections, 64);
        assert_eq!(
            config.server.header_read_timeout,
            Duration::from_millis(2500)
        );
        let pages = config.limits.pages.unwrap();
        assert_eq!(
            (pages.limit(), pages.period(), pages.burst()),
            (100, Duration::from_secs(10), 5)
        );
        assert_eq!(config.limits.api, None);
        assert_eq!(
            config.limits.waf_penalty.unwrap().period(),
            Duration::from_secs(3600)
        );
        assert_eq!(
            parse(&[], &["--rate-limits", "off"]).unwrap().limits,
            RateLimits::off()
        );
        let defaults = RateLimits::default();
        assert!(
            defaults.pages.is_some() && defaults.api.is_some() && defaults.waf_penalty.is_some()
        );
        for bad in [
            "0/min",
            "10",
            "10/fortnight",
            "10/min,burst=0",
            "10/min,max=3",
            "x/s",
        ] {
            let error = parse(&[], &["--rate-api", bad]).unwrap_err();
            assert!(error.contains("EDGE_RATE_API"), "{bad}: {error}");
        }
        assert!(parse(&[], &["--header-timeout-ms", "0"]).is_err());
        assert!(parse(&[], &["--max-connections", "many"]).is_err());
    }

    #[test]
    fn bad_settings_are_named() {
        assert!(
            parse(&[("EDGE_PORT", "99999")], &[])
                .unwrap_err()
                .contains("99999")
        );
        assert!(
            parse(&[], &["--origin", "/relative"])
                .unwrap_err()
                .contains("absolute")
        );
        assert!(
            parse(&[], &["--port"])
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(
            parse(&[], &["--frobnicate"])
                .unwrap_err()
                .contains("unknown option")
        );
    }
}
