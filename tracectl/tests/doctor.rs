//! `tracectl doctor`, the built binary, against loopback receivers that go
//! wrong in one way each: nothing listening, the other OTLP protocol, TLS of
//! an untrusted CA, TLS where http:// is configured, a required token, a
//! sampler that drops everything; and a healthy receiver, which gets the
//! `doctor` span whose trace id is printed. Each case checks the words a
//! user reads and the exit code.

use std::time::Duration;

use testkit::receiver::{Options, Speaks, TempDir, TestCa, TestReceiver};

struct Outcome {
    code: i32,
    stdout: String,
}

/// Runs `tracectl doctor` with only these `OTEL_*` variables set.
async fn doctor(vars: &[(&str, String)]) -> Outcome {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tracectl"));
    command.arg("doctor").kill_on_drop(true);
    for (name, _) in std::env::vars() {
        if name.starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
    for (name, value) in vars {
        command.env(name, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("doctor finishes within a minute")
        .expect("doctor runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("--- tracectl doctor {vars:?}\n{stdout}{stderr}");
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout,
    }
}

fn endpoint_vars(endpoint: String, protocol: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000".to_owned()),
    ]
}

#[track_caller]
fn assert_says(outcome: &Outcome, words: &[&str]) {
    for w in words {
        assert!(
            outcome.stdout.contains(w),
            "expected {w:?} in:\n{}",
            outcome.stdout
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_is_named_with_host_and_port() {
    let closed = testkit::closed_port();
    for protocol in ["grpc", "http/protobuf"] {
        let out = doctor(&endpoint_vars(format!("http://{closed}"), protocol)).await;
        assert_eq!(out.code, 1);
        assert_says(
            &out,
            &[
                &format!("nothing listens on {closed}"),
                "PROBLEM",
                "1 problem found",
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_against_an_http1_only_port_says_to_use_http_protobuf() {
    let receiver = TestReceiver::start(Options {
        speaks: Speaks::Http1,
        ..Options::default()
    })
    .await
    .unwrap();
    let out = doctor(&endpoint_vars(receiver.endpoint(), "grpc")).await;
    assert_eq!(out.code, 1);
    assert_says(
        &out,
        &[
            "protocol mismatch",
            "speaks OTLP http/protobuf, not grpc",
            "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
            "4317",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_against_a_grpc_only_port_says_to_use_grpc() {
    let receiver = TestReceiver::start(Options {
        speaks: Speaks::Http2,
        ..Options::default()
    })
    .await
    .unwrap();
    let out = doctor(&endpoint_vars(receiver.endpoint(), "http/protobuf")).await;
    assert_eq!(out.code, 1);
    assert_says(
        &out,
        &[
            "protocol mismatch",
            "speaks OTLP grpc, not http/protobuf",
            "OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
            "4318",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_an_untrusted_ca_is_explained() {
    let server_ca = TestCa::new("the server's CA");
    let other_ca = TestCa::new("a CA the client has");
    let dir = TempDir::new("doctor-tls");
    let ca_file = other_ca.write_pem(&dir.0, "ca.pem");
    let receiver = TestReceiver::start(Options {
        tls: Some(&server_ca),
        ..Options::default()
    })
    .await
    .unwrap();
    for protocol in ["grpc", "http/protobuf"] {
        let mut vars = endpoint_vars(receiver.endpoint(), protocol);
        vars.push((
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            ca_file.display().to_string(),
        ));
        let out = doctor(&vars).await;
        assert_eq!(out.code, 1);
        assert_says(
            &out,
            &[
                "is not trusted",
                &ca_file.display().to_string(),
                "set OTEL_EXPORTER_OTLP_CERTIFICATE to the PEM file of the CA",
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_a_tls_port_says_to_use_https() {
    let ca = TestCa::new("doctor test CA");
    let receiver = TestReceiver::start(Options {
        tls: Some(&ca),
        ..Options::default()
    })
    .await
    .unwrap();
    for protocol in ["grpc", "http/protobuf"] {
        let out = doctor(&endpoint_vars(
            format!("http://{}", receiver.addr),
            protocol,
        ))
        .await;
        assert_eq!(out.code, 1);
        assert_says(
            &out,
            &[
                "requires TLS, but the endpoint is http://",
                &format!("use https://{}", receiver.addr),
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_token_points_at_otel_exporter_otlp_headers() {
    let receiver = TestReceiver::start(Options {
        bearer: Some("the-token"),
        ..Options::default()
    })
    .await
    .unwrap();
    for protocol in ["grpc", "http/protobuf"] {
        let out = doctor(&endpoint_vars(receiver.endpoint(), protocol)).await;
        assert_eq!(out.code, 1);
        assert_says(
            &out,
            &[
                "authentication rejected",
                "no header is set",
                "set OTEL_EXPORTER_OTLP_HEADERS",
            ],
        );
        let mut vars = endpoint_vars(receiver.endpoint(), protocol);
        vars.push((
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20wrong-token".into(),
        ));
        let out = doctor(&vars).await;
        assert_eq!(out.code, 1);
        assert_says(
            &out,
            &[
                "authentication rejected",
                "OTEL_EXPORTER_OTLP_HEADERS sends authorization",
            ],
        );
        assert!(!out.stdout.contains("wrong-token"), "{}", out.stdout);
    }
    assert!(receiver.exports().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampler_or_switch_that_drops_everything_is_a_problem() {
    let receiver = TestReceiver::start(Options::default()).await.unwrap();
    let mut vars = endpoint_vars(receiver.endpoint(), "grpc");
    vars.push(("OTEL_TRACES_SAMPLER", "always_off".into()));
    let out = doctor(&vars).await;
    assert_eq!(out.code, 1);
    assert_says(
        &out,
        &[
            "OTEL_TRACES_SAMPLER=always_off: no trace is sampled",
            "1 problem found",
        ],
    );

    let mut vars = endpoint_vars(receiver.endpoint(), "grpc");
    vars.push(("OTEL_TRACES_SAMPLER", "traceidratio".into()));
    vars.push(("OTEL_TRACES_SAMPLER_ARG", "0".into()));
    let out = doctor(&vars).await;
    assert_eq!(out.code, 1);
    assert_says(&out, &["OTEL_TRACES_SAMPLER_ARG=0"]);

    let out = doctor(&[
        ("OTEL_SDK_DISABLED", "true".into()),
        ("OTEL_TRACES_EXPORTER", "none".into()),
    ])
    .await;
    assert_eq!(out.code, 1);
    assert_says(
        &out,
        &[
            "OTEL_SDK_DISABLED=true",
            "OTEL_TRACES_EXPORTER=none",
            "2 problems found",
        ],
    );

    let out = doctor(&[("OTEL_TRACES_SAMPLER", "sometimes".into())]).await;
    assert_eq!(out.code, 1);
    assert_says(
        &out,
        &["the configuration is invalid", "OTEL_TRACES_SAMPLER"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_secured_endpoint_gets_the_doctor_span_and_exit_0() {
    let ca = TestCa::new("doctor test CA");
    let dir = TempDir::new("doctor-ok");
    let ca_file = ca.write_pem(&dir.0, "ca.pem");
    let receiver = TestReceiver::start(Options {
        tls: Some(&ca),
        bearer: Some("the-token"),
        ..Options::default()
    })
    .await
    .unwrap();
    for protocol in ["grpc", "http/protobuf"] {
        let mut vars = endpoint_vars(receiver.endpoint(), protocol);
        vars.extend([
            (
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
                ca_file.display().to_string(),
            ),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20the-token".to_owned(),
            ),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".to_owned()),
            ("OTEL_SERVICE_NAME", "doctor-test".to_owned()),
        ]);
        let out = doctor(&vars).await;
        assert_eq!(out.code, 0, "{}", out.stdout);
        assert_says(
            &out,
            &[
                "accepts TCP connections",
                "accepted an empty OTLP export",
                "TLS, gzip, headers authorization",
                "sent a test span named \"doctor\"",
                "no problem found",
            ],
        );
        assert!(!out.stdout.contains("the-token"), "{}", out.stdout);
        let trace_id = out
            .stdout
            .split("in trace ")
            .nth(1)
            .and_then(|rest| rest.get(..32))
            .expect("a trace id is printed")
            .to_owned();
        let received = receiver
            .exports()
            .into_iter()
            .flat_map(|e| e.spans)
            .any(|(id, name)| id == trace_id && name == "doctor");
        assert!(received, "span doctor of trace {trace_id} not received");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelt_otel_variable_is_named() {
    let closed = testkit::closed_port();
    let mut vars = endpoint_vars(format!("http://{closed}"), "grpc");
    vars.push((
        "OTEL_EXPORTER_OTLP_ENDPONT",
        "http://collector:4317".to_owned(),
    ));
    let out = doctor(&vars).await;
    assert_says(
        &out,
        &["OTEL_EXPORTER_OTLP_ENDPONT is set, but no service here reads it"],
    );
    assert!(
        !out.stdout
            .contains("OTEL_EXPORTER_OTLP_ENDPOINT is set, but"),
        "{}",
        out.stdout
    );
}
