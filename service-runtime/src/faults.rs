//! Fault injection for demos, in the spirit of Jaeger's HotROD: extra latency
//! or errors in a named step of a service, so a trace shows what a slow query
//! or a failing dependency looks like and how to find it.
//!
//! Off unless the `FAULTS` variable names a step. Syntax, one or more rules
//! separated by `;`:
//!
//! ```text
//! FAULTS="lookup-user:delay=300ms"                 every user lookup 300 ms slower
//! FAULTS="check-stock:error=0.25"                  a quarter of stock checks fail
//! FAULTS="reserve-stock:delay=50ms,error=0.1;lookup-user:delay=1s"
//! FAULTS="lookup-user:delay=800ms,slow=0.2"       a fifth of user lookups 800 ms slower
//! ```
//!
//! An injected delay is its own INTERNAL span, `injected-delay {step}`, under
//! the step's span, so the waterfall shows where the time went; an injected
//! error marks the step's span ERROR with `error.type=injected_fault`. Both
//! carry `fault.injected=true`, so they cannot be mistaken for real faults.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use tracing_common::ConfigError;

/// What to do to one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fault {
    pub delay: Duration,
    /// Probability in `[0, 1]` that a call gets the delay (1 unless `slow=`
    /// says otherwise): a share of slow requests among normal ones.
    pub delay_rate: f64,
    /// Probability in `[0, 1]` that the step fails.
    pub error_rate: f64,
}

impl Default for Fault {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            delay_rate: 1.0,
            error_rate: 0.0,
        }
    }
}

/// The faults of one service; cheap to clone, empty (no effect) by default.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    rules: Arc<BTreeMap<String, Fault>>,
}

/// The error a step returns when a fault was injected into it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fault injected into {step} (FAULTS)")]
pub struct Injected {
    pub step: String,
}

impl Injected {
    /// The HTTP answer (status, JSON `error` code, message) every service
    /// gives when a step failed on purpose: 500 `injected_fault`, like
    /// [`crate::database::error_response`] for a failed statement.
    pub fn error_response(&self) -> (http::StatusCode, &'static str, String) {
        (
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "injected_fault",
            self.to_string(),
        )
    }
}

const VARIABLE: &str = "FAULTS";

impl Faults {
    /// Reads `FAULTS`; unset or empty means no faults. `steps` are the step
    /// names this service knows, so a typo is an error instead of a no-op.
    pub fn from_env(steps: &[&str]) -> Result<Self, ConfigError> {
        match std::env::var(VARIABLE) {
            Ok(v) => Self::parse(&v, steps),
            Err(std::env::VarError::NotPresent) => Ok(Self::default()),
            Err(std::env::VarError::NotUnicode(_)) => Err(error("<not UTF-8>", "not valid UTF-8")),
        }
    }

    pub fn parse(value: &str, steps: &[&str]) -> Result<Self, ConfigError> {
        let mut rules = BTreeMap::new();
        for rule in value.split(';').map(str::trim).filter(|r| !r.is_empty()) {
            let (step, effects) = rule
                .split_once(':')
                .ok_or_else(|| error(value, format!("`{rule}`: expected step:effect")))?;
            let step = step.trim();
            if !steps.contains(&step) {
                return Err(error(
                    value,
                    format!(
                        "unknown step `{step}`; this service has: {}",
                        steps.join(", ")
                    ),
                ));
            }
            let mut fault = Fault::default();
            for effect in effects.split(',').map(str::trim) {
                match effect.split_once('=') {
                    Some(("delay", d)) => {
                        fault.delay = parse_duration(d.trim())
                            .ok_or_else(|| error(value, format!("`{effect}`: use 250ms or 2s")))?;
                    }
                    Some(("error", p)) => {
                        fault.error_rate = probability(p).ok_or_else(|| {
                            error(value, format!("`{effect}`: a probability from 0 to 1"))
                        })?;
                    }
                    Some(("slow", p)) => {
                        fault.delay_rate = probability(p).ok_or_else(|| {
                            error(value, format!("`{effect}`: a probability from 0 to 1"))
                        })?;
                    }
                    _ => {
                        return Err(error(
                            value,
                            format!(
                                "`{effect}`: expected delay=<duration>, slow=<probability> or error=<probability>"
                            ),
                        ));
                    }
                }
            }
            rules.insert(step.to_owned(), fault);
        }
        Ok(Self {
            rules: Arc::new(rules),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, for the start-up log line.
    pub fn describe(&self) -> String {
        self.rules
            .iter()
            .map(|(step, f)| {
                format!(
                    "{step}: delay {:?} in a share of {}, error rate {}",
                    f.delay, f.delay_rate, f.error_rate
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Applies the fault configured for `step`, if any: sleeps in an
    /// `injected-delay` span (in the configured share of calls), then fails
    /// with the configured probability (recorded on the current span).
    /// Returns at once when none is set.
    pub async fn inject(&self, step: &str) -> Result<(), Injected> {
        let Some(fault) = self.rules.get(step) else {
            return Ok(());
        };
        if !fault.delay.is_zero() && (fault.delay_rate >= 1.0 || draw() < fault.delay_rate) {
            let span = tracing::info_span!(
                "injected-delay",
                otel.name = format!("injected-delay {step}"),
                fault.injected = true,
                fault.step = step,
                fault.delay_ms = i64::try_from(fault.delay.as_millis()).unwrap_or(i64::MAX),
            );
            tokio::time::sleep(fault.delay).instrument(span).await;
        }
        if fault.error_rate > 0.0 && draw() < fault.error_rate {
            opentelemetry::trace::get_active_span(|span| {
                span.set_attribute(opentelemetry::KeyValue::new("fault.injected", true));
            });
            tracing_common::spans::record_current_error(
                "injected_fault",
                &format!("fault injected into {step} (FAULTS)"),
            );
            return Err(Injected {
                step: step.to_owned(),
            });
        }
        Ok(())
    }
}

/// A uniform draw in `[0, 1)` from the thread's generator (no lock).
fn draw() -> f64 {
    rand::random()
}

fn probability(s: &str) -> Option<f64> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|p| (0.0..=1.0).contains(p))
}

fn parse_duration(s: &str) -> Option<Duration> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.trim().parse().ok().map(Duration::from_millis);
    }
    s.strip_suffix('s')?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0 && *v <= 3600.0)
        .map(Duration::from_secs_f64)
}

fn error(value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        variable: VARIABLE,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: &[&str] = &["lookup-user", "check-stock"];

    #[test]
    fn no_variable_means_no_faults() {
        let faults = Faults::parse("", STEPS).unwrap();
        assert!(faults.is_empty());
        assert!(Faults::default().is_empty());
    }

    #[test]
    fn rules_are_parsed() {
        let f = Faults::parse(
            "lookup-user:delay=300ms ; check-stock:delay=1.5s,error=0.25",
            STEPS,
        )
        .unwrap();
        assert_eq!(
            f.rules["lookup-user"],
            Fault {
                delay: Duration::from_millis(300),
                delay_rate: 1.0,
                error_rate: 0.0
            }
        );
        assert_eq!(f.rules["check-stock"].delay, Duration::from_millis(1500));
        assert_eq!(f.rules["check-stock"].error_rate, 0.25);
    }

    #[test]
    fn bad_rules_name_the_variable_and_the_problem() {
        for (value, reason) in [
            ("lookup-users:delay=1s", "unknown step `lookup-users`"),
            ("lookup-user", "expected step:effect"),
            ("lookup-user:delay=fast", "use 250ms or 2s"),
            ("lookup-user:error=2", "a probability from 0 to 1"),
            (
                "lookup-user:delay=1s,slow=-0.1",
                "a probability from 0 to 1",
            ),
            ("lookup-user:crash", "expected delay=<duration>"),
        ] {
            let e = Faults::parse(value, STEPS).unwrap_err();
            assert_eq!(e.variable, "FAULTS");
            assert!(e.reason.contains(reason), "{value}: {}", e.reason);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_share_delays_about_that_share_of_calls() {
        let f = Faults::parse("lookup-user:delay=1s,slow=0.25", STEPS).unwrap();
        assert_eq!(f.rules["lookup-user"].delay_rate, 0.25);
        let n = 2_000;
        let mut delayed = 0;
        for _ in 0..n {
            let started = tokio::time::Instant::now();
            f.inject("lookup-user").await.unwrap();
            if started.elapsed() >= Duration::from_secs(1) {
                delayed += 1;
            }
        }
        assert!((400..600).contains(&delayed), "{delayed} of {n}");
    }

    #[tokio::test]
    async fn an_error_rate_of_one_always_fails_and_zero_never() {
        let f = Faults::parse("lookup-user:error=1;check-stock:error=0", STEPS).unwrap();
        for _ in 0..50 {
            assert_eq!(
                f.inject("lookup-user").await,
                Err(Injected {
                    step: "lookup-user".into()
                })
            );
            assert_eq!(f.inject("check-stock").await, Ok(()));
        }
        assert_eq!(f.inject("not-configured").await, Ok(()));
    }

    #[tokio::test]
    async fn a_delay_is_slept() {
        let f = Faults::parse("check-stock:delay=60ms", STEPS).unwrap();
        let started = std::time::Instant::now();
        f.inject("check-stock").await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(60));
    }
}
