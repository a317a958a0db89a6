//! Fuzzing the request decoding with proptest (the target stays in the repo and runs with
//! `cargo test`): whatever bytes or JSON arrive, decoding and validation answer Ok or a
//! refusal with a 4xx status and a message — never a panic — and what is accepted survives a
//! round trip through the wire format.

use proptest::prelude::*;
use serde_json::{Value, json};
use switchyard_core::fleet::Fleet;
use switchyard_sched::Scheduler;
use switchyard_server::api::SubmitRequest;

fn fleet() -> &'static Fleet {
    static FLEET: std::sync::OnceLock<Fleet> = std::sync::OnceLock::new();
    FLEET.get_or_init(Fleet::default_fleet)
}

/// The server's admission path, minus the store.
fn admit(bytes: &[u8], tenant: &str) -> Result<(), (u16, String)> {
    let req: SubmitRequest = serde_json::from_slice(bytes).map_err(|e| (400, e.to_string()))?;
    let spec = req
        .to_spec("j-test", tenant, 0)
        .map_err(|r| (r.status, r.message))?;
    req.check_fleet(fleet())
        .map_err(|r| (r.status, r.message))?;
    req.check_quota(fleet(), tenant)
        .map_err(|r| (r.status, r.message))?;
    let mut sched = Scheduler::new(fleet(), Default::default(), Default::default());
    sched.validate(&spec).map_err(|why| (422, why))?;
    // Accepted: the spec is sane.
    assert!(spec.accelerators >= 1);
    assert!(
        spec.min_accelerators
            .is_none_or(|m| m >= 1 && m <= spec.accelerators)
    );
    let back: SubmitRequest =
        serde_json::from_str(&serde_json::to_string(&req).expect("encode")).expect("decode");
    assert_eq!(back, req);
    Ok(())
}

fn check(bytes: &[u8], tenant: &str) {
    if let Err((status, message)) = admit(bytes, tenant) {
        assert!((400..500).contains(&status), "status {status}");
        assert!(!message.is_empty());
    }
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u32>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        prop_oneof![
            Just(f64::MAX),
            Just(f64::MIN_POSITIVE),
            Just(-0.0),
            Just(1e-300)
        ]
        .prop_map(Value::from),
        "[a-zA-Z0-9 _.!-]{0,20}".prop_map(Value::from),
        prop_oneof![
            Just("training"),
            Just("batch"),
            Just("inference"),
            Just("H100"),
            Just("colossus-1"),
            Just("TPU v5p"),
            Just("serve")
        ]
        .prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: [&str; 11] = [
    "name",
    "kind",
    "tenant",
    "accelerators",
    "min_accelerators",
    "priority",
    "accelerator_types",
    "clusters",
    "duration_s",
    "replicas",
    "bogus",
];

/// Objects made mostly of the real fields with arbitrary values: reaches deep into validation.
fn submission() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(prop::sample::select(FIELDS.to_vec()), json_value(), 0..8)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check(&bytes, "research");
    }

    #[test]
    fn random_json_never_panics(v in json_value()) {
        check(v.to_string().as_bytes(), "research");
    }

    #[test]
    fn random_submissions_never_panic(v in submission(), tenant in prop::sample::select(vec!["research", "evals", "nobody"])) {
        check(v.to_string().as_bytes(), tenant);
    }

    #[test]
    fn plausible_submissions_are_accepted_or_refused_with_reason(
        kind in prop::sample::select(vec!["training", "batch", "inference"]),
        accelerators in 0u32..300_000,
        duration in prop_oneof![Just(None), (-10.0f64..1e8).prop_map(Some)],
        replicas in prop_oneof![Just(None), (0u32..20, 0u32..20).prop_map(Some)],
    ) {
        let mut v = json!({"kind": kind, "accelerators": accelerators});
        if let Some(d) = duration { v["duration_s"] = json!(d); }
        if let Some((lo, hi)) = replicas { v["replicas"] = json!({"min": lo, "max": hi}); }
        check(v.to_string().as_bytes(), "research");
    }
}

#[test]
fn the_example_job_files_are_valid() {
    for f in ["train.toml", "batch.toml", "serve.toml", "workload.toml"] {
        let path = format!("{}/../../examples/jobs/{f}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("read the example");
        let req: SubmitRequest = toml::from_str(&text).unwrap_or_else(|e| panic!("{f}: {e}"));
        let bytes = serde_json::to_vec(&req).expect("encode");
        admit(&bytes, "research").unwrap_or_else(|e| panic!("{f}: {e:?}"));
    }
}

#[test]
fn commands_and_retry_limits_are_checked() {
    let base = |extra: Value| {
        let mut v = json!({"kind": "training", "accelerators": 8, "duration_s": 60.0});
        for (k, x) in extra.as_object().expect("object") {
            v[k] = x.clone();
        }
        admit(v.to_string().as_bytes(), "research")
    };
    base(json!({"command": {"argv": ["train", "--steps", "10"], "env": {"A_1": "x"}, "working_dir": "/w"}, "max_retries": 0}))
        .expect("a full command is accepted");
    for (extra, words) in [
        (json!({"command": {"argv": []}}), "at least the program"),
        (json!({"command": {"argv": [""]}}), "at least the program"),
        (json!({"command": {"argv": ["a\u{0}b"]}}), "NUL"),
        (
            json!({"command": {"argv": ["x".repeat(5000)]}}),
            "longer than",
        ),
        (
            json!({"command": {"argv": ["x"], "env": {"1BAD": "v"}}}),
            "not a valid variable name",
        ),
        (
            json!({"command": {"argv": ["x"], "env": {"A-B": "v"}}}),
            "not a valid variable name",
        ),
        (
            json!({"command": {"argv": ["x"], "working_dir": ""}}),
            "working_dir",
        ),
        (json!({"max_retries": 1001}), "out of range"),
        // A huge number is echoed short.
        (
            json!({"duration_s": 1e300}),
            "duration_s = 1e300 must be above 0",
        ),
    ] {
        let (status, message) = base(extra.clone()).expect_err("refused");
        assert_eq!(status, 422, "{extra}: {message}");
        assert!(message.contains(words), "{extra}: {message}");
    }
    let (status, _) =
        base(json!({"command": {"argv": ["x"], "surprise": 1}})).expect_err("unknown field");
    assert_eq!(status, 400);
    let twice = br#"{"kind": "training", "accelerators": 8, "duration_s": 60.0,
        "command": {"argv": ["x"], "env": {"A": "1", "A": "2"}}}"#;
    let (status, message) = admit(twice, "research").expect_err("a variable named twice");
    assert_eq!(status, 400);
    assert!(message.contains("command.env names `A` twice"), "{message}");
    let (status, message) =
        base(json!({"command": {"argv": ["x"], "env": ["A"]}})).expect_err("env not a map");
    assert_eq!(status, 400);
    assert!(
        message.contains("a map of environment variable names"),
        "{message}"
    );
}

/// `null` means what leaving a value out means, for lists and the environment as for the
/// optional numbers and names: JSON clients write `None` as `null`.
#[test]
fn null_is_the_same_as_absent() {
    let with_nulls = json!({
        "kind": "training", "accelerators": 8, "duration_s": 60.0, "name": null,
        "priority": null, "accelerator_types": null, "clusters": null,
        "command": {"argv": ["x"], "env": null, "working_dir": null}
    });
    admit(with_nulls.to_string().as_bytes(), "research").expect("nulls are accepted");
    let req: SubmitRequest = serde_json::from_value(with_nulls).expect("decodes");
    let plain: SubmitRequest = serde_json::from_value(json!({
        "kind": "training", "accelerators": 8, "duration_s": 60.0, "command": {"argv": ["x"]}
    }))
    .expect("decodes");
    assert_eq!(req, plain);
    let service = json!({"kind": "inference", "accelerators": 1, "replicas": {"min": 1, "max": 1}, "max_retries": 2});
    let (status, message) =
        admit(service.to_string().as_bytes(), "research").expect_err("retries are for gangs");
    assert_eq!(status, 422);
    assert!(message.contains("max_retries"), "{message}");
}
