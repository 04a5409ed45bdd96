//! `[telemetry]`: where traces go (CONTRACT section 12).

use serde::Deserialize;

/// `[telemetry]`: OpenTelemetry traces over OTLP/HTTP (protobuf). Without `otlp_endpoint` no
/// span is recorded or exported; upstreams still receive a `traceparent`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's base URL (`http://127.0.0.1:4318`); spans are posted to
    /// `<otlp_endpoint>/v1/traces`. Absent: export is off.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute of every span.
    #[serde(default = "defaults::service_name")]
    pub service_name: String,
    /// Share of new traces recorded, 0.0 to 1.0 (a trusted caller's sampling decision is
    /// followed). Default 1.0.
    #[serde(default = "defaults::sample_ratio")]
    pub sample_ratio: f64,
    /// How long one export (with its retries) may take before the batch is given up.
    #[serde(default = "defaults::export_timeout_secs")]
    pub export_timeout_secs: u64,
    /// Spans waiting for export at most; more are dropped (requests are never held up).
    #[serde(default = "defaults::max_queue_size")]
    pub max_queue_size: usize,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            service_name: defaults::service_name(),
            sample_ratio: defaults::sample_ratio(),
            export_timeout_secs: defaults::export_timeout_secs(),
            max_queue_size: defaults::max_queue_size(),
        }
    }
}

impl TelemetryConfig {
    /// The URL spans are posted to: `otlp_endpoint` + `/v1/traces`.
    pub fn traces_url(&self) -> Option<String> {
        self.otlp_endpoint
            .as_deref()
            .map(|e| format!("{}/v1/traces", e.trim_end_matches('/')))
    }

    pub(super) fn validate<E>(&self, err: &impl Fn(&str, String) -> E) -> Result<(), E> {
        if let Some(endpoint) = &self.otlp_endpoint {
            let uri = endpoint.parse::<http::Uri>().ok();
            let scheme_ok = uri
                .as_ref()
                .is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")));
            let host_ok = uri.as_ref().is_some_and(|u| u.authority().is_some());
            let no_query = uri.as_ref().is_some_and(|u| u.query().is_none());
            if !(scheme_ok && host_ok && no_query) {
                return Err(err(
                    "telemetry.otlp_endpoint",
                    format!(
                        "`{endpoint}` is not an http:// or https:// base URL; write it like \
                         `http://127.0.0.1:4318` (spans go to its /v1/traces)"
                    ),
                ));
            }
        }
        if self.service_name.trim().is_empty() {
            return Err(err("telemetry.service_name", "must not be empty".into()));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(err(
                "telemetry.sample_ratio",
                format!("{} is not between 0.0 and 1.0", self.sample_ratio),
            ));
        }
        if self.export_timeout_secs == 0 || self.export_timeout_secs > 60 {
            return Err(err(
                "telemetry.export_timeout_secs",
                "must be between 1 and 60".into(),
            ));
        }
        if self.max_queue_size < 64 {
            return Err(err(
                "telemetry.max_queue_size",
                "must be at least 64".into(),
            ));
        }
        Ok(())
    }
}

mod defaults {
    pub fn service_name() -> String {
        "taxgate".into()
    }
    pub fn sample_ratio() -> f64 {
        1.0
    }
    pub fn export_timeout_secs() -> u64 {
        5
    }
    pub fn max_queue_size() -> usize {
        16_384
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{BASE, load};

    #[test]
    fn telemetry_is_off_by_default_and_its_errors_name_the_key() {
        let c = load(BASE).unwrap();
        assert!(c.telemetry.otlp_endpoint.is_none());
        assert_eq!(c.telemetry.service_name, "taxgate");
        let c = load(&format!(
            "{BASE}\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318/\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.telemetry.traces_url().as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        for (line, key) in [
            (
                "otlp_endpoint = \"127.0.0.1:4318\"",
                "telemetry.otlp_endpoint",
            ),
            (
                "otlp_endpoint = \"grpc://c:4317\"",
                "telemetry.otlp_endpoint",
            ),
            (
                "otlp_endpoint = \"http://c:4318?x=1\"",
                "telemetry.otlp_endpoint",
            ),
            ("service_name = \" \"", "telemetry.service_name"),
            ("sample_ratio = 1.5", "telemetry.sample_ratio"),
            ("export_timeout_secs = 0", "telemetry.export_timeout_secs"),
            ("max_queue_size = 1", "telemetry.max_queue_size"),
            ("otlp = \"x\"", "telemetry.otlp"),
        ] {
            let e = load(&format!("{BASE}\n[telemetry]\n{line}\n")).unwrap_err();
            assert_eq!(e.key, key, "{line}: {e}");
        }
    }
}
