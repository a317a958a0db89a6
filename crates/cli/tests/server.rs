//! Integration tests of `switchyard server` and the client verbs: real processes on loopback
//! ports, against SQLite and against PostgreSQL (`SWITCHYARD_TEST_POSTGRES_URL`).

mod server_common;

use std::process::Command;

use serde_json::{Value, json};
use server_common::*;

fn submit(url: &str, token: &str, body: &Value) -> (u16, Value) {
    call(
        "POST",
        &format!("{url}/v1/jobs"),
        Some(token),
        Some(&body.to_string()),
    )
}

fn lifecycle(db: String) {
    let s = Server::start(&db);
    let t = token(&db, "research", false);
    let (status, short) = submit(
        &s.url,
        &t,
        &json!({"name": "short", "kind": "training", "accelerators": 64, "duration_s": 1.0}),
    );
    assert_eq!(status, 201, "{short}");
    assert_eq!(short["state"], "pending");
    assert_eq!(short["tenant"], "research");
    assert_eq!(
        short["priority"], 50,
        "the team's default priority from the fleet"
    );
    let short_id = short["id"].as_str().expect("id").to_owned();
    let (status, long) = submit(
        &s.url,
        &t,
        &json!({"name": "long", "kind": "batch", "accelerators": 8, "duration_s": 86400.0,
                "accelerator_types": ["H100"]}),
    );
    assert_eq!(status, 201, "{long}");
    let long_id = long["id"].as_str().expect("id").to_owned();
    let (status, svc) = submit(
        &s.url,
        &t,
        &json!({"name": "chat", "kind": "inference", "accelerators": 8, "replicas": {"min": 2, "max": 4}}),
    );
    assert_eq!(status, 201, "{svc}");
    let svc_id = svc["id"].as_str().expect("id").to_owned();

    // The short run starts and finishes; the service runs its replicas.
    wait_for(30, "the short run to finish", || {
        (job_state(&s.url, &t, &short_id) == "done").then_some(())
    });
    wait_for(30, "the service to run", || {
        (job_state(&s.url, &t, &svc_id) == "running").then_some(())
    });
    let (_, job) = call(
        "GET",
        &format!("{}/v1/jobs/{svc_id}", s.url),
        Some(&t),
        None,
    );
    assert_eq!(job["allocated"], 16, "two replicas of 8: {job}");
    let (_, ev) = call(
        "GET",
        &format!("{}/v1/jobs/{short_id}/events", s.url),
        Some(&t),
        None,
    );
    let kinds: Vec<&str> = ev["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds.first(), Some(&"submitted"), "{ev}");
    assert!(
        kinds.contains(&"started") && kinds.last() == Some(&"finished"),
        "{ev}"
    );

    // Cancel the long one.
    wait_for(30, "the long job to start", || {
        (job_state(&s.url, &t, &long_id) == "running").then_some(())
    });
    let (status, c) = call(
        "POST",
        &format!("{}/v1/jobs/{long_id}/cancel", s.url),
        Some(&t),
        None,
    );
    assert_eq!(status, 202, "{c}");
    assert_eq!(c["cancel_requested"], true);
    wait_for(30, "the cancellation", || {
        (job_state(&s.url, &t, &long_id) == "cancelled").then_some(())
    });
    let (status, again) = call(
        "POST",
        &format!("{}/v1/jobs/{long_id}/cancel", s.url),
        Some(&t),
        None,
    );
    assert_eq!(status, 409, "{again}");

    // Lists: filters and pagination.
    let (status, page) = call("GET", &format!("{}/v1/jobs?limit=2", s.url), Some(&t), None);
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(2));
    let next = page["next"].as_str().expect("a next page");
    // A tenant's cursor counts its own jobs (what others submit is none of its business).
    assert_eq!(next, "2", "{page}");
    let (_, page2) = call(
        "GET",
        &format!("{}/v1/jobs?limit=2&after={next}", s.url),
        Some(&t),
        None,
    );
    assert_eq!(page2["jobs"].as_array().map(Vec::len), Some(1));
    assert!(page2["next"].is_null());
    // A full page with nothing after it is the last: no `next`.
    let (_, whole) = call("GET", &format!("{}/v1/jobs?limit=3", s.url), Some(&t), None);
    assert_eq!(whole["jobs"].as_array().map(Vec::len), Some(3), "{whole}");
    assert!(whole["next"].is_null(), "{whole}");
    let (_, done) = call(
        "GET",
        &format!("{}/v1/jobs?state=done,cancelled&kind=training", s.url),
        Some(&t),
        None,
    );
    let ids: Vec<&str> = done["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert_eq!(ids, [short_id.as_str()]);
    // States are read as leniently as kinds.
    let (status, same) = call(
        "GET",
        &format!("{}/v1/jobs?state=Done,%20CANCELLED&kind=Training", s.url),
        Some(&t),
        None,
    );
    assert_eq!(status, 200, "{same}");
    assert_eq!(same["jobs"], done["jobs"]);

    // Fleet, tenants, metrics, health.
    let (status, fleet) = call("GET", &format!("{}/v1/fleet", s.url), Some(&t), None);
    assert_eq!(status, 200);
    let busy: i64 = fleet["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .filter_map(|c| c["busy"].as_i64())
        .sum();
    assert_eq!(busy, 16, "{fleet}");
    let (_, tenants) = call("GET", &format!("{}/v1/tenants", s.url), Some(&t), None);
    assert_eq!(
        tenants["tenants"].as_array().map(Vec::len),
        Some(1),
        "a tenant sees only itself: {tenants}"
    );
    assert_eq!(tenants["tenants"][0]["organisation"], "frontier-lab");
    // Metrics need a token; a tenant's shows its own queue only, an admin's every tenant's.
    let (status, e) = call("GET", &format!("{}/metrics", s.url), None, None);
    assert_eq!(status, 401, "{e}");
    let other = token(&s.db, "vision", false);
    let (status, _) = submit(
        &s.url,
        &other,
        &json!({"kind": "batch", "accelerators": 1, "duration_s": 60.0}),
    );
    assert_eq!(status, 201);
    let admin = token(&s.db, "ops", true);
    let scrape = |token: &str| {
        let (status, metrics) = call("GET", &format!("{}/metrics", s.url), Some(token), None);
        assert_eq!(status, 200, "{metrics}");
        metrics.as_str().expect("text").to_owned()
    };
    let text = scrape(&t);
    for m in [
        "switchyard_queue_length{tenant=\"research\"}",
        "switchyard_accelerators_busy{cluster=",
        "switchyard_scheduling_pass_seconds_count",
        "switchyard_decisions_total",
        "switchyard_leader 1",
        "switchyard_scheduler_jobs_held ",
    ] {
        assert!(text.contains(m), "metrics lack {m}:\n{text}");
    }
    assert!(!text.contains("vision"), "{text}");
    let text = scrape(&admin);
    assert!(
        text.contains("tenant=\"vision\"") && text.contains("tenant=\"research\""),
        "{text}"
    );
    assert_eq!(
        call("GET", &format!("{}/healthz", s.url), None, None).0,
        200
    );
    assert_eq!(s.role(), "leader");
    let (status, doc) = call("GET", &format!("{}/v1/openapi.json", s.url), None, None);
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
}

fn tenant_isolation(db: String) {
    let s = Server::start(&db);
    let a = token(&db, "research", false);
    let b = token(&db, "serving", false);
    let admin = token(&db, "ops", true);
    let (_, ja) = submit(
        &s.url,
        &a,
        &json!({"name": "mine", "kind": "batch", "accelerators": 8, "duration_s": 3600.0}),
    );
    let id = ja["id"].as_str().expect("id");
    let (_, jb) = submit(
        &s.url,
        &b,
        &json!({"name": "mine", "kind": "batch", "accelerators": 8, "duration_s": 3600.0}),
    );
    assert!(
        jb["id"].is_string(),
        "the same name is fine for another tenant: {jb}"
    );
    for (method, path) in [
        ("GET", format!("/v1/jobs/{id}")),
        ("GET", format!("/v1/jobs/{id}/events")),
        ("POST", format!("/v1/jobs/{id}/cancel")),
    ] {
        let (status, body) = call(method, &format!("{}{path}", s.url), Some(&b), None);
        assert_eq!(status, 404, "{method} {path} by another tenant: {body}");
        assert!(!body.to_string().contains("research"), "no leak: {body}");
    }
    let jobs = all_jobs(&s.url, &b);
    assert_eq!(jobs.len(), 1);
    assert!(jobs.iter().all(|j| j["tenant"] == "serving"));
    // Cursors do not count other tenants' work: b's first job and first event are number 1
    // although research's job and its events were written before them. (A second job of b's
    // follows, so that the first page has a next.)
    let (_, page) = call("GET", &format!("{}/v1/jobs?limit=1", s.url), Some(&b), None);
    assert!(
        page["next"].is_null(),
        "b's one job is the whole list: {page}"
    );
    submit(
        &s.url,
        &b,
        &json!({"name": "mine-2", "kind": "batch", "accelerators": 8, "duration_s": 3600.0}),
    );
    let (_, page) = call("GET", &format!("{}/v1/jobs?limit=1", s.url), Some(&b), None);
    assert_eq!(page["next"], "1", "{page}");
    let jb_id = jb["id"].as_str().expect("id");
    let (_, ev) = call(
        "GET",
        &format!("{}/v1/jobs/{jb_id}/events?limit=1", s.url),
        Some(&b),
        None,
    );
    assert_eq!(ev["events"][0]["cursor"], 1, "{ev}");
    assert_eq!(ev["next"], 1, "{ev}");
    let (status, _) = call(
        "GET",
        &format!("{}/v1/jobs?tenant=research", s.url),
        Some(&b),
        None,
    );
    assert_eq!(status, 403);
    let (status, body) = submit(
        &s.url,
        &b,
        &json!({"tenant": "research", "kind": "batch", "accelerators": 8, "duration_s": 1.0}),
    );
    assert_eq!(status, 403, "{body}");
    // Admins see and act on everyone's jobs, and submit for any tenant.
    assert_eq!(all_jobs(&s.url, &admin).len(), 3);
    assert_eq!(
        call(
            "GET",
            &format!("{}/v1/jobs/{id}", s.url),
            Some(&admin),
            None
        )
        .0,
        200
    );
    let (status, body) = submit(
        &s.url,
        &admin,
        &json!({"tenant": "evals", "kind": "batch", "accelerators": 8, "duration_s": 1.0}),
    );
    assert_eq!(
        (status, body["tenant"].as_str()),
        (201, Some("evals")),
        "{body}"
    );
    let (_, tenants) = call("GET", &format!("{}/v1/tenants", s.url), Some(&admin), None);
    assert!(
        tenants["tenants"].as_array().expect("tenants").len() >= 5,
        "{tenants}"
    );
    assert_eq!(
        call(
            "POST",
            &format!("{}/v1/jobs/{id}/cancel", s.url),
            Some(&admin),
            None
        )
        .0,
        202
    );
}

fn error_codes(db: String) {
    let s = Server::start(&db);
    let t = token(&db, "evals", false);
    let jobs = format!("{}/v1/jobs", s.url);
    let ok = json!({"kind": "batch", "accelerators": 8, "duration_s": 60.0});
    // A token made for an organisation's name would run under no quota: refused, naming the
    // organisation's teams.
    let org = token(&db, "frontier-lab", false);
    let (status, answer) = call("POST", &jobs, Some(&org), Some(&ok.to_string()));
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(
                "`frontier-lab` is an organisation of the fleet, not a team: jobs belong to one of \
             its teams (pretraining, research, evals)"
            )),
        "{answer}"
    );
    let expect = |status: u16, code: &str, got: (u16, Value)| {
        assert_eq!(got.0, status, "{}", got.1);
        assert_eq!(got.1["error"]["code"], code, "{}", got.1);
        assert!(
            got.1["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    };
    expect(
        401,
        "unauthorized",
        call("POST", &jobs, None, Some(&ok.to_string())),
    );
    expect(
        401,
        "unauthorized",
        call("POST", &jobs, Some("sy_not-a-token"), Some(&ok.to_string())),
    );
    expect(
        400,
        "invalid_json",
        call("POST", &jobs, Some(&t), Some("{\"kind\": ")),
    );
    expect(
        400,
        "invalid_json",
        call("POST", &jobs, Some(&t), Some("[]")),
    );
    for (body, found) in [
        ("[1]", "an array"),
        (" \"job\"", "a string"),
        ("7", "a number"),
    ] {
        let (status, answer) = call("POST", &jobs, Some(&t), Some(body));
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer.to_string().contains(&format!(
                "the request body is not a valid submission: expected a JSON object, found {found}"
            )),
            "{body}: {answer}"
        );
    }
    // A variable named twice is refused, not silently reduced to its last value.
    let (status, body) = call(
        "POST",
        &jobs,
        Some(&t),
        Some(
            r#"{"kind":"batch","accelerators":8,"duration_s":1.0,"command":{"argv":["x"],"env":{"A":"1","A":"2"}}}"#,
        ),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("names `A` twice"), "{body}");
    let (status, body) = call(
        "POST",
        &jobs,
        Some(&t),
        Some(r#"{"kind":"batch","accelerators":8,"duration_s":60,"gpus":8}"#),
    );
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown field `gpus`")),
        "{body}"
    );
    // A wrong value is named by its field's path.
    for (body, status_wanted, says) in [
        (
            r#"{"kind":null,"accelerators":8,"duration_s":60}"#,
            400,
            "kind: invalid type: null, expected one of its names as a string",
        ),
        (
            r#"{"kind":"inference","accelerators":8,"replicas":{"min":"a","max":2}}"#,
            400,
            "replicas.min: invalid type: string \"a\", expected a whole number of replicas from 1 to 100000",
        ),
        (
            r#"{"kind":"batch","accelerators":8,"duration_s":60,"command":{"argv":["x"],"working_dir":"a\u0000b"}}"#,
            422,
            "command.working_dir must be a path of 1 to 4096 bytes without NUL bytes (it is a \
             path with a NUL byte)",
        ),
    ] {
        let (status, answer) = call("POST", &jobs, Some(&t), Some(body));
        assert_eq!(status, status_wanted, "{body}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(says)),
            "{body}: {answer}"
        );
    }
    // Two Authorization headers: refused, not the first one taken.
    let mut twice = ureq::get(&jobs)
        .header("Authorization", format!("Bearer {t}"))
        .header("Authorization", "Bearer sy_other")
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .expect("an answer");
    assert_eq!(twice.status().as_u16(), 400);
    let text = twice.body_mut().read_to_string().expect("a body");
    assert!(
        text.contains("more than one Authorization header"),
        "{text}"
    );
    expect(
        400,
        "invalid_json",
        call(
            "POST",
            &jobs,
            Some(&t),
            Some(r#"{"kind":"batch","accelerators":-1,"duration_s":60}"#),
        ),
    );
    expect(
        422,
        "invalid_request",
        submit(
            &s.url,
            &t,
            &json!({"kind": "batch", "accelerators": 0, "duration_s": 60.0}),
        ),
    );
    expect(
        422,
        "invalid_request",
        submit(
            &s.url,
            &t,
            &json!({"kind": "batch", "accelerators": 8, "duration_s": 1e300}),
        ),
    );
    expect(
        422,
        "invalid_request",
        submit(&s.url, &t, &json!({"kind": "batch", "accelerators": 8})),
    );
    expect(
        422,
        "invalid_request",
        submit(
            &s.url,
            &t,
            &json!({"kind": "inference", "accelerators": 8, "replicas": {"min": 3, "max": 2}}),
        ),
    );
    expect(
        422,
        "invalid_request",
        submit(
            &s.url,
            &t,
            &json!({"kind": "batch", "accelerators": 8, "duration_s": 60.0, "accelerator_types": ["Z9000"]}),
        ),
    );
    expect(
        422,
        "invalid_request",
        submit(
            &s.url,
            &t,
            &json!({"kind": "batch", "accelerators": 8, "duration_s": 60.0, "clusters": ["atlantis"]}),
        ),
    );
    let twice = submit(
        &s.url,
        &t,
        &json!({"kind": "batch", "accelerators": 8, "duration_s": 60.0,
                "clusters": ["colossus-1", "colossus-1"]}),
    );
    assert!(
        twice
            .1
            .to_string()
            .contains("clusters names `colossus-1` twice"),
        "{}",
        twice.1
    );
    expect(422, "invalid_request", twice);
    let aliases = submit(
        &s.url,
        &t,
        &json!({"kind": "batch", "accelerators": 8, "duration_s": 60.0,
                "accelerator_types": ["H100", "H200", "H100-SXM"]}),
    );
    assert!(
        aliases.1.to_string().contains(
            "accelerator_types names H100-SXM twice: `H100` (entry 0) and `H100-SXM` (entry 2) \
             are the same accelerator"
        ),
        "{}",
        aliases.1
    );
    expect(422, "invalid_request", aliases);
    expect(
        422,
        "invalid_request",
        submit(
            &s.url,
            &t,
            &json!({"name": "bad name!", "kind": "batch", "accelerators": 8, "duration_s": 60.0}),
        ),
    );
    expect(
        422,
        "unschedulable",
        submit(
            &s.url,
            &t,
            &json!({"kind": "batch", "accelerators": 4096, "duration_s": 60.0, "clusters": ["aws-h100-spot"]}),
        ),
    );
    expect(
        403,
        "quota_exceeded",
        submit(
            &s.url,
            &t,
            &json!({"kind": "batch", "accelerators": 10_000, "duration_s": 60.0}),
        ),
    );
    // A service's minimum replicas count together: 100,000 of 8 is past any cap.
    expect(
        403,
        "quota_exceeded",
        submit(
            &s.url,
            &t,
            &json!({"kind": "inference", "accelerators": 8, "replicas": {"min": 100_000, "max": 100_000}}),
        ),
    );
    let big = format!(
        r#"{{"kind":"batch","accelerators":8,"duration_s":60,"name":"{}"}}"#,
        "x".repeat(100_000)
    );
    expect(413, "too_large", call("POST", &jobs, Some(&t), Some(&big)));
    expect(
        400,
        "invalid_request",
        call("GET", &format!("{jobs}?limit=0"), Some(&t), None),
    );
    expect(
        400,
        "invalid_request",
        call("GET", &format!("{jobs}?colour=red"), Some(&t), None),
    );
    expect(
        400,
        "invalid_request",
        call("GET", &format!("{jobs}?state=sleeping"), Some(&t), None),
    );
    // A negative cursor, an empty filter or a parameter given twice is refused, not guessed.
    for bad in [
        "after=-1",
        "state=",
        "state=pending,,running",
        "tenant=",
        "tenant=a%00b",
        "limit=1&limit=2",
    ] {
        let (status, body) = call("GET", &format!("{jobs}?{bad}"), Some(&t), None);
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (_, body) = call("GET", &format!("{jobs}?limit=1&limit=2"), Some(&t), None);
    assert!(body.to_string().contains("given twice"), "{body}");
    // A gang size out of range names the field's range, not its type's.
    for accelerators in ["-1", "4294967297", "1.5", "1e20", "1.0"] {
        let body = format!(r#"{{"kind":"batch","accelerators":{accelerators},"duration_s":60}}"#);
        let (status, answer) = call("POST", &jobs, Some(&t), Some(&body));
        assert_eq!(status, 400, "{accelerators}: {answer}");
        assert!(
            answer
                .to_string()
                .contains("is not a whole number of accelerators from 1 to 1000000"),
            "{answer}"
        );
        assert!(
            !answer.to_string().contains("accelerators: 1 is not"),
            "{answer}"
        );
        if accelerators == "1.0" {
            assert!(
                answer
                    .to_string()
                    .contains("write it as 1, without a decimal point"),
                "{answer}"
            );
        }
    }
    // So do the other counts.
    for (body, says) in [
        (
            r#"{"kind":"training","accelerators":8,"min_accelerators":-1,"duration_s":60}"#,
            "min_accelerators: -1 is not a whole number of accelerators from 1 to 1000000",
        ),
        (
            r#"{"kind":"batch","accelerators":8,"max_retries":1.5,"duration_s":60}"#,
            "max_retries: 1.5 is not a whole number of retries from 0 to 1000",
        ),
        (
            r#"{"kind":"batch","accelerators":8,"priority":3000000000,"duration_s":60}"#,
            "priority: 3000000000 is not a whole number from -1000 to 1000",
        ),
        (
            r#"{"kind":"inference","accelerators":8,"replicas":{"min":-2,"max":3}}"#,
            "-2 is not a whole number of replicas from 1 to 100000",
        ),
    ] {
        let (status, answer) = call("POST", &jobs, Some(&t), Some(body));
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer.to_string().contains(says), "{body}: {answer}");
    }
    // A number in range written with a sign, and one past 64 bits, say so.
    for (bad, says) in [
        (
            "limit=%2B5",
            "limit must be 1 to 1000 (`+5`: digits only, without a sign)",
        ),
        (
            "limit=+5",
            "(` 5` has a space: in a URL's query a `+` or `%20` stands for one)",
        ),
        (
            "after=18446744073709551615",
            "(`18446744073709551615` is past the largest, 9223372036854775807)",
        ),
    ] {
        let (status, body) = call("GET", &format!("{jobs}?{bad}"), Some(&t), None);
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.to_string().contains(says), "{bad}: {body}");
    }
    expect(
        404,
        "not_found",
        call("GET", &format!("{jobs}/j-0000000000000000"), Some(&t), None),
    );
    // An id with a NUL is no job's (PostgreSQL would refuse the query outright).
    expect(
        404,
        "not_found",
        call("GET", &format!("{jobs}/j-%00"), Some(&t), None),
    );
    expect(
        404,
        "not_found",
        call("GET", &format!("{}/v2/everything", s.url), Some(&t), None),
    );
    // Answers the framework makes itself are JSON too; a wrong method's says which are right.
    let wrong_method = call(
        "POST",
        &format!("{jobs}/j-0000000000000000"),
        Some(&t),
        None,
    );
    assert!(
        wrong_method.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("takes GET, HEAD only")),
        "{}",
        wrong_method.1
    );
    expect(405, "method_not_allowed", wrong_method);
    let allow = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
        .delete(&jobs)
        .header("Authorization", &format!("Bearer {t}"))
        .call()
        .expect("the server answers");
    assert_eq!(allow.status().as_u16(), 405);
    assert_eq!(
        allow.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("POST,GET,HEAD")
    );
    // An id that is not UTF-8 once decoded is one the server cannot have, as for a node.
    for url in [format!("{jobs}/%FF"), format!("{jobs}/j-%ff/events")] {
        let (status, e) = call("GET", &url, Some(&t), None);
        assert_eq!(status, 404, "{url}: {e}");
        assert_eq!(e["error"]["code"], "not_found", "{url}: {e}");
    }
    expect(
        400,
        "invalid_request",
        call(
            "GET",
            &format!("{jobs}/j-0000000000000000?x=1"),
            Some(&t),
            None,
        ),
    );
    expect(
        400,
        "invalid_request",
        call(
            "GET",
            &format!("{jobs}/j-0000000000000000/events?x=1"),
            Some(&t),
            None,
        ),
    );
    let (status, e) = call("GET", &format!("{jobs}/{}", "j".repeat(65)), Some(&t), None);
    assert_eq!(status, 404, "{e}");
    let m = e["error"]["message"].as_str().unwrap_or_default();
    assert!(m.contains("65-byte id"), "{m}");
    let named = json!({"name": "once", "kind": "batch", "accelerators": 8, "duration_s": 60.0});
    let (status, first) = submit(&s.url, &t, &named);
    assert_eq!(status, 201);
    let again = submit(&s.url, &t, &named);
    let message = again.1["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    expect(409, "conflict", again);
    assert!(
        message.contains(first["id"].as_str().expect("id")),
        "{message}"
    );
    // Nothing half-written: exactly the one accepted job exists.
    assert_eq!(all_jobs(&s.url, &t).len(), 1);

    // Every route refuses query parameters it does not take, writes included.
    let id = first["id"].as_str().expect("id");
    for (method, url) in [
        ("POST", format!("{jobs}?dry=1")),
        ("POST", format!("{jobs}/{id}/cancel?force=1")),
        ("POST", format!("{jobs}/{id}/scale?x=1")),
        ("GET", format!("{}/v1/fleet?x=1", s.url)),
        ("GET", format!("{}/v1/tenants?x=1", s.url)),
        // A scraper asking for a filter must not get every series unawares.
        ("GET", format!("{}/metrics?tenant=evals", s.url)),
        ("GET", format!("{}/healthz?x=1", s.url)),
        ("GET", format!("{}/readyz?x=1", s.url)),
        ("GET", format!("{}/v1/openapi.json?x=1", s.url)),
    ] {
        let got = call(method, &url, Some(&t), Some(&ok.to_string()));
        assert_eq!(got.0, 400, "{method} {url}: {}", got.1);
    }
    // Fields are read in the shapes the API documents, not in any shape serde could map:
    // an enum as a map, a struct as an array of its fields in order.
    for (body, wanted) in [
        (
            json!({"kind": {"batch": null}, "accelerators": 1, "duration_s": 10.0}),
            "kind: invalid type: map, expected one of its names as a string",
        ),
        (
            json!({"kind": "inference", "accelerators": 1, "replicas": [1, 2]}),
            "replicas: invalid type: sequence, expected an object",
        ),
        (
            json!({"kind": "batch", "accelerators": 1, "duration_s": 10.0,
                   "command": [["sleep", "1"], {"A": "1"}, "/tmp"]}),
            "command: invalid type: sequence, expected an object",
        ),
        (
            json!({"kind": "inference", "accelerators": 1, "replicas": {"min": 1}}),
            "replicas: missing field `max`",
        ),
        (
            json!({"kind": "batch", "accelerators": 1, "duration_s": 10.0,
                   "command": {"argv": ["true"], "cwd": "/tmp"}}),
            "command.cwd: unknown field `cwd`",
        ),
    ] {
        let (status, answer) = call("POST", &jobs, Some(&t), Some(&body.to_string()));
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some("invalid_json")),
            "{body}: {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(wanted), "{body}: {message}");
    }
    // A body that ends before its first field has no place to name.
    let (_, answer) = call("POST", &jobs, Some(&t), Some("{"));
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("the request body is not a valid submission: EOF"),
        "{message}"
    );
    // A variable name that is too long is told so, with the limit.
    let long = "A".repeat(300);
    let (status, answer) = call(
        "POST",
        &jobs,
        Some(&t),
        Some(
            &json!({"kind": "batch", "accelerators": 1, "duration_s": 10.0,
                    "command": {"argv": ["true"], "env": {long.as_str(): "1"}}})
            .to_string(),
        ),
    );
    assert_eq!(status, 422, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("300 bytes long; names are at most 256"),
        "{message}"
    );
    // A compressed body is refused for what it is, not read as broken JSON.
    let res = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
        .post(&jobs)
        .header("Authorization", &format!("Bearer {t}"))
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .send(&[0x1f, 0x8b, 0x08, 0x00][..])
        .expect("answers");
    assert_eq!(res.status().as_u16(), 415);
    let answer: Value =
        serde_json::from_str(&res.into_body().read_to_string().expect("body")).expect("json");
    assert_eq!(answer["error"]["code"], "unsupported_encoding", "{answer}");
    // A cancellation takes no body: a reason or an option would be dropped unread.
    let cancel = format!("{jobs}/{id}/cancel");
    let (status, answer) = call("POST", &cancel, Some(&t), Some(r#"{"reason": "x"}"#));
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("takes no request body")),
        "{answer}"
    );
    assert_eq!(job(&s.url, &t, id)["cancel_requested"], false);
    assert_eq!(call("POST", &cancel, Some(&t), Some("{}")).0, 202);
    // The authorization scheme is case-insensitive.
    let res = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
        .get(&jobs)
        .header("Authorization", &format!("bearer {t}"))
        .call()
        .expect("answers");
    assert_eq!(res.status().as_u16(), 200);
    // A node agent's token reads nothing of the tenant API, the fleet included.
    let out = Command::new(BIN)
        .args(["token", "create", "--db", &db, "--agent"])
        .output()
        .expect("token create --agent");
    let agent_token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    expect(
        403,
        "forbidden",
        call(
            "GET",
            &format!("{}/v1/fleet", s.url),
            Some(&agent_token),
            None,
        ),
    );
}

fn cli_verbs(db: String) {
    let s = Server::start(&db);
    let t = token(&db, "research", false);
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env("SWITCHYARD_URL", &s.url)
            .env("SWITCHYARD_TOKEN", &t)
            .output()
            .expect("run the cli");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/jobs/");
    let mut ids = Vec::new();
    for f in ["train.toml", "batch.toml", "serve.toml"] {
        let (code, out, err) = run(&["submit", &format!("{root}{f}"), "--json"]);
        assert_eq!(code, Some(0), "{f}: {err}");
        let job: Value = serde_json::from_str(&out).expect("json");
        ids.push(job["id"].as_str().expect("id").to_owned());
    }
    let (code, out, _) = run(&["status"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("ID") && ids.iter().all(|id| out.contains(id.as_str())),
        "{out}"
    );
    let (code, out, _) = run(&["status", &ids[0]]);
    assert_eq!(code, Some(0));
    assert!(out.contains("why"), "{out}");
    let (code, out, _) = run(&["events", &ids[0], "--json"]);
    assert_eq!(code, Some(0));
    let ev: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(ev["events"][0]["kind"], "submitted");
    let (code, out, _) = run(&["queue"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("TENANT"), "{out}");
    let (code, out, err) = run(&["fleet", "show", "--server"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("colossus-1") && out.contains("BUSY"), "{out}");
    let (code, out, _) = run(&["cancel", &ids[1]]);
    assert_eq!(code, Some(0));
    assert!(out.contains("cancellation"), "{out}");
    let (code, _, err) = run(&["status", "j-0000000000000000"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no job"), "{err}");
    let bad = std::env::temp_dir().join(format!("bad-job-{}.toml", std::process::id()));
    std::fs::write(
        &bad,
        "kind = \"training\"\naccelerators = 8\nduration_s = 60\ngpus = 3\n",
    )
    .expect("write");
    let (code, _, err) = run(&["submit", bad.to_str().expect("utf-8")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("gpus"), "{err}");
    // JSON has no NaN: the file is refused for what it says, not for a missing field.
    std::fs::write(
        &bad,
        "kind = \"training\"\naccelerators = 8\nduration_s = nan\n",
    )
    .expect("write");
    let (code, _, err) = run(&["submit", bad.to_str().expect("utf-8")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("duration_s = NaN is not a finite number"),
        "{err}"
    );
    // What the server refuses is told against the file too.
    std::fs::write(
        &bad,
        "kind = \"training\"\naccelerators = 16000000\nduration_s = 60\n",
    )
    .expect("write");
    let (code, _, err) = run(&["submit", bad.to_str().expect("utf-8")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{}: the server refused the request (422)",
            bad.display()
        )),
        "{err}"
    );
    // And a name already in use (409).
    std::fs::write(
        &bad,
        "name = \"twice\"\nkind = \"batch\"\naccelerators = 8\nduration_s = 60\n",
    )
    .expect("write");
    let (code, _, err) = run(&["submit", bad.to_str().expect("utf-8")]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = run(&["submit", bad.to_str().expect("utf-8")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("{}: ", bad.display())) && err.contains("(409)"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["status", "--url", "http://127.0.0.1:9", "--token", "x"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(4),
        "unreachable server: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN)
        .args(["status", "--url", &s.url])
        .env_remove("SWITCHYARD_TOKEN")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

fn job(url: &str, t: &str, id: &str) -> Value {
    let (status, job) = call("GET", &format!("{url}/v1/jobs/{id}"), Some(t), None);
    assert_eq!(status, 200, "{job}");
    job
}

fn event_kinds(url: &str, t: &str, id: &str) -> Vec<String> {
    let (status, ev) = call("GET", &format!("{url}/v1/jobs/{id}/events"), Some(t), None);
    assert_eq!(status, 200, "{ev}");
    ev["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_owned))
        .collect()
}

/// `POST /v1/jobs/{id}/scale` and `switchyard scale` against the dry-run backend: a service
/// of replicas {min 1, max 4} scaled to 3 holds 3x its accelerators, then 1x; the count
/// survives a change of leader; what cannot be scaled is refused.
fn scaling(db: String) {
    let mut s = Server::start(&db);
    let t = token(&db, "research", false);
    let other = token(&db, "vision", false);
    let (status, svc) = submit(
        &s.url,
        &t,
        &json!({"name": "chat", "kind": "inference", "accelerators": 8, "replicas": {"min": 1, "max": 4}}),
    );
    assert_eq!(status, 201, "{svc}");
    let id = svc["id"].as_str().expect("id").to_owned();
    assert!(svc.get("replicas_wanted").is_none(), "{svc}");
    wait_for(30, "the service to run one replica", || {
        (job(&s.url, &t, &id)["allocated"] == 8).then_some(())
    });
    let scale = |url: &str, token: &str, id: &str, body: &str| {
        call(
            "POST",
            &format!("{url}/v1/jobs/{id}/scale"),
            Some(token),
            Some(body),
        )
    };

    // Up to 3 through the API.
    let (status, j) = scale(&s.url, &t, &id, r#"{"replicas": 3}"#);
    assert_eq!(status, 200, "{j}");
    assert_eq!(j["replicas_wanted"], 3, "{j}");
    wait_for(30, "three replicas", || {
        (job(&s.url, &t, &id)["allocated"] == 24).then_some(())
    });
    let j = job(&s.url, &t, &id);
    assert!(
        j["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("serving with 3 replicas")),
        "{j}"
    );
    let kinds = event_kinds(&s.url, &t, &id);
    assert!(kinds.contains(&"scale_requested".to_owned()), "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| *k == "replica_added").count(),
        3,
        "{kinds:?}"
    );

    // Down to 1 with the CLI.
    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env("SWITCHYARD_URL", &s.url)
            .env("SWITCHYARD_TOKEN", &t)
            .output()
            .expect("run the cli");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = cli(&["scale", &id, "--replicas", "1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&format!("{id} wants 1 replica (")), "{out}");
    wait_for(30, "one replica", || {
        (job(&s.url, &t, &id)["allocated"] == 8).then_some(())
    });
    assert_eq!(
        event_kinds(&s.url, &t, &id)
            .iter()
            .filter(|k| *k == "replica_removed")
            .count(),
        2
    );
    let (code, out, _) = cli(&["status", &id]);
    assert_eq!(code, Some(0));
    assert!(out.contains("replicas"), "{out}");

    // Events in pages of two, followed by `next`, are the whole list in order; a page that is
    // not full has no `next`.
    let (status, whole) = call(
        "GET",
        &format!("{}/v1/jobs/{id}/events", s.url),
        Some(&t),
        None,
    );
    assert_eq!(status, 200, "{whole}");
    assert!(whole.get("next").is_none(), "{whole}");
    let whole = whole["events"].as_array().expect("events").clone();
    assert!(whole.len() > 4, "{whole:?}");
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = call(
            "GET",
            &format!("{}/v1/jobs/{id}/events?limit=2&after={after}", s.url),
            Some(&t),
            None,
        );
        assert_eq!(status, 200, "{page}");
        let events = page["events"].as_array().expect("events");
        assert!(events.len() <= 2, "{page}");
        paged.extend(events.iter().cloned());
        match page["next"].as_i64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(paged, whole);
    // Cursors number the job's own events from 1, with no gap where other jobs' events were
    // written in between.
    let cursors: Vec<i64> = whole.iter().filter_map(|e| e["cursor"].as_i64()).collect();
    assert_eq!(cursors, (1..=whole.len() as i64).collect::<Vec<_>>());
    for bad in ["limit=0", "limit=1001", "after=-1", "after=x"] {
        let (status, e) = call(
            "GET",
            &format!("{}/v1/jobs/{id}/events?{bad}", s.url),
            Some(&t),
            None,
        );
        assert_eq!(status, 400, "{bad}: {e}");
    }
    // A replica filter that is not a replica name is refused, saying what one looks like.
    let (status, e) = call(
        "GET",
        &format!("{}/v1/jobs/{id}/logs?replica=%25", s.url),
        Some(&t),
        None,
    );
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("is not a replica name")),
        "{e}"
    );
    let (code, out, err) = cli(&["events", &id, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let listed: Value = serde_json::from_str(&out).expect("events --json");
    assert_eq!(listed["events"].as_array(), Some(&whole));

    // Refusals: out of range (422, saying the range), malformed (400), another tenant's or
    // an unknown job (404), a job that is not a service (422), a finished service (422).
    let (status, e) = scale(&s.url, &t, &id, r#"{"replicas": 5}"#);
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (422, Some("invalid_request")),
        "{e}"
    );
    let m = e["error"]["message"].as_str().unwrap_or_default();
    assert!(
        m.contains("range, 1 to 4") && m.contains("min = 1, max = 4"),
        "{m}"
    );
    let (status, e) = scale(&s.url, &t, &id, r#"{"replicas": 0}"#);
    assert_eq!(status, 422, "{e}");
    let (status, e) = scale(&s.url, &t, &id, r#"{"replicas": 2, "extra": 1}"#);
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("invalid_json")),
        "{e}"
    );
    let m = e["error"]["message"].as_str().unwrap_or_default();
    assert!(m.contains("not a valid scale request"), "{m}");
    let (status, e) = scale(&s.url, &other, &id, r#"{"replicas": 2}"#);
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{e}"
    );
    let (status, e) = scale(&s.url, &t, "j-0000000000000000", r#"{"replicas": 2}"#);
    assert_eq!(status, 404, "{e}");
    let (code, _, err) = cli(&["scale", &id, "--replicas", "9"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("range, 1 to 4"), "{err}");
    // A count no service could ask for is refused before a request, naming the range.
    let (code, _, err) = cli(&["scale", &id, "--replicas", "99999999999999999999"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("`99999999999999999999` is not a whole number from 0 to 100000"),
        "{err}"
    );
    let (code, _, err) = cli(&["scale", "j-0000000000000000", "--replicas", "2"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no job"), "{err}");
    let (status, batch) = submit(
        &s.url,
        &t,
        &json!({"kind": "batch", "accelerators": 8, "duration_s": 3600.0}),
    );
    assert_eq!(status, 201, "{batch}");
    let (status, e) = scale(
        &s.url,
        &t,
        batch["id"].as_str().expect("id"),
        r#"{"replicas": 2}"#,
    );
    assert_eq!(status, 422, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("only inference services scale")),
        "{e}"
    );
    // The other tenant's attempt changed nothing.
    assert_eq!(job(&s.url, &t, &id)["replicas_wanted"], 1);

    // A new leader applies the stored count: scale to 2, kill the server before or after the
    // leader acts on it; the next server serves 2 replicas.
    let (status, _) = scale(&s.url, &t, &id, r#"{"replicas": 2}"#);
    assert_eq!(status, 200);
    s.kill();
    let s = Server::start(&db);
    wait_for(60, "the new leader to serve two replicas", || {
        let j = job(&s.url, &t, &id);
        let kinds = event_kinds(&s.url, &t, &id);
        let recovered = kinds.iter().rposition(|k| k == "recovered")?;
        let added = kinds[recovered..]
            .iter()
            .filter(|k| *k == "replica_added")
            .count();
        (j["allocated"] == 16 && j["state"] == "running" && added == 2).then_some(())
    });

    // Cancelled: no more scaling.
    let (status, _) = call(
        "POST",
        &format!("{}/v1/jobs/{id}/cancel", s.url),
        Some(&t),
        None,
    );
    assert_eq!(status, 202);
    wait_for(30, "the cancellation", || {
        (job_state(&s.url, &t, &id) == "cancelled").then_some(())
    });
    let (status, e) = scale(&s.url, &t, &id, r#"{"replicas": 2}"#);
    assert_eq!(status, 422, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("already cancelled")),
        "{e}"
    );
}

/// A page of `GET /v1/jobs` stops at about 4 MiB of specifications, however high `limit`, and
/// `next` leads through the rest: 70 submissions of 60 KB each come in two pages.
fn big_pages(db: String) {
    let s = Server::start(&db);
    let t = token(&db, "research", false);
    let arg = "x".repeat(4000);
    let argv: Vec<&str> = std::iter::once("true")
        .chain(std::iter::repeat_n(arg.as_str(), 15))
        .collect();
    let mut ids = Vec::new();
    for i in 0..70 {
        let (status, j) = submit(
            &s.url,
            &t,
            &json!({"name": format!("big-{i}"), "kind": "batch", "accelerators": 1,
                    "duration_s": 3600.0, "command": {"argv": argv}}),
        );
        assert_eq!(status, 201, "{j}");
        ids.push(j["id"].as_str().expect("id").to_owned());
    }
    let mut listed = Vec::new();
    let mut pages = 0;
    let mut after = String::new();
    loop {
        let (status, page) = call(
            "GET",
            &format!("{}/v1/jobs?limit=1000{after}", s.url),
            Some(&t),
            None,
        );
        assert_eq!(status, 200, "{}", page["error"]);
        pages += 1;
        let jobs = page["jobs"].as_array().expect("jobs");
        let bytes: usize = jobs.iter().map(|j| j["spec"].to_string().len()).sum();
        assert!(bytes < (4 << 20) + (64 << 10), "{bytes} bytes in a page");
        listed.extend(
            jobs.iter()
                .map(|j| j["id"].as_str().expect("id").to_owned()),
        );
        match page["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    assert_eq!(listed, ids);
    assert!(pages >= 2, "{pages} pages");
}

/// A page of the dashboard: (status, headers we look at, HTML).
fn page(url: &str, authorization: Option<&str>) -> (u16, [Option<String>; 3], String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.get(url);
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    let mut res = req.call().expect("the server answers");
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let headers = [
        header("content-type"),
        header("www-authenticate"),
        header("content-security-policy"),
    ];
    let body = res.body_mut().read_to_string().expect("a body");
    (res.status().as_u16(), headers, body)
}

fn basic(token: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("anyone:{token}"))
    )
}

/// The dashboard: a browser signs in with Basic auth (token as password) and sees the fleet and
/// its own jobs only, every user-given value escaped, no script allowed; errors are pages.
fn dashboard(db: String) {
    let s = Server::start(&db);
    let a = token(&db, "research", false);
    let b = token(&db, "serving", false);
    let (_, ja) = submit(
        &s.url,
        &a,
        &json!({"name": "tagged", "kind": "batch", "accelerators": 8, "duration_s": 3600.0,
                "command": {"argv": ["echo", "<script>alert(1)</script>"]}}),
    );
    let id = ja["id"].as_str().expect("id").to_owned();
    let (_, jb) = submit(
        &s.url,
        &b,
        &json!({"name": "other-tenants-job", "kind": "batch", "accelerators": 8, "duration_s": 3600.0}),
    );
    let b_id = jb["id"].as_str().expect("id").to_owned();

    // Without credentials the browser is asked for them.
    let (status, [content_type, challenge, _], html) = page(&format!("{}/dashboard", s.url), None);
    assert_eq!(status, 401, "{html}");
    assert!(challenge.is_some_and(|c| c.starts_with("Basic")));
    assert!(content_type.is_some_and(|c| c.starts_with("text/html")));
    assert!(html.contains("token create"), "{html}");
    // (A browser sends a password, not an API header: the page does not speak of one.)
    assert!(
        html.contains("not signed in") && !html.contains("Bearer"),
        "{html}"
    );
    let (status, ..) = page(&format!("{}/dashboard", s.url), Some(&basic("sy_wrong")));
    assert_eq!(status, 401);

    // Signed in: the fleet's clusters and this tenant's jobs, not another tenant's.
    let (status, [_, _, csp], html) =
        page(&format!("{}/dashboard?show=all", s.url), Some(&basic(&a)));
    assert_eq!(status, 200, "{html}");
    assert!(csp.is_some_and(|c| c.contains("default-src 'none'")));
    assert!(
        html.contains("colossus-1") && html.contains("tagged"),
        "{html}"
    );
    assert!(html.contains(&format!("/dashboard/jobs/{id}")), "{html}");
    assert!(
        !html.contains("other-tenants-job") && !html.contains("<script"),
        "{html}"
    );
    // A Bearer token works as on the API; Basic credentials do not work on the API (a browser
    // would send them with cross-site requests).
    let (status, ..) = page(
        &format!("{}/dashboard", s.url),
        Some(&format!("Bearer {a}")),
    );
    assert_eq!(status, 200);
    let (status, _, body) = page(&format!("{}/v1/jobs", s.url), Some(&basic(&a)));
    assert_eq!(status, 401, "{body}");
    // What a cross-site form would send with the browser's saved credentials creates nothing.
    let forged = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
        .post(format!("{}/v1/jobs", s.url))
        .header("Authorization", &basic(&a))
        .header("Content-Type", "text/plain")
        .send(r#"{"kind":"batch","accelerators":1,"command":{"argv":["true"]}}"#)
        .expect("the server answers");
    assert_eq!(forged.status().as_u16(), 401);
    assert_eq!(all_jobs(&s.url, &a).len(), 1);
    // The token may also be typed as the user name; an agent's token is refused with a new
    // prompt; a trailing slash leads to the overview.
    use base64::Engine as _;
    let as_user = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{a}:"))
    );
    assert_eq!(page(&format!("{}/dashboard", s.url), Some(&as_user)).0, 200);
    let agent = Command::new(BIN)
        .args(["token", "create", "--db", &db, "--agent"])
        .output()
        .expect("token create --agent");
    let agent = String::from_utf8_lossy(&agent.stdout).trim().to_owned();
    let (status, [_, challenge, _], html) =
        page(&format!("{}/dashboard", s.url), Some(&basic(&agent)));
    assert_eq!(status, 401, "{html}");
    assert!(challenge.is_some() && html.contains("node agent"), "{html}");
    let slash = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent()
        .get(format!("{}/dashboard/", s.url))
        .call()
        .expect("the server answers");
    assert_eq!(slash.status().as_u16(), 308);
    assert_eq!(
        slash
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some("/dashboard")
    );
    // The dashboard is read-only, and says which methods its pages take.
    let posted = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
        .post(format!("{}/dashboard/anything", s.url))
        .header("Authorization", &basic(&a))
        .send_empty()
        .expect("the server answers");
    assert_eq!(posted.status().as_u16(), 405);
    assert_eq!(
        posted.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("GET,HEAD")
    );

    // The job's page: its submission (escaped), its events.
    let (status, _, html) = page(&format!("{}/dashboard/jobs/{id}", s.url), Some(&basic(&a)));
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script"), "{html}");
    assert!(html.contains("submitted"), "{html}");
    // Another tenant's job is not found, as on /v1; bad input is a 400 page saying why.
    let (status, [content_type, ..], html) = page(
        &format!("{}/dashboard/jobs/{b_id}", s.url),
        Some(&basic(&a)),
    );
    assert_eq!(status, 404, "{html}");
    assert!(content_type.is_some_and(|c| c.starts_with("text/html")));
    let (status, _, html) = page(
        &format!("{}/dashboard?show=runing", s.url),
        Some(&basic(&a)),
    );
    assert_eq!(status, 400);
    assert!(html.contains("show must be one of"), "{html}");
    for path in [
        "/dashboard/nope",
        "/dashboard/jobs/",
        "/dashboard/jobs/x/events",
    ] {
        let (status, [content_type, ..], html) =
            page(&format!("{}{path}", s.url), Some(&basic(&a)));
        assert_eq!(status, 404, "{path}: {html}");
        assert!(
            content_type.is_some_and(|c| c.starts_with("text/html")),
            "{path}"
        );
    }
    let (status, _, html) = page(
        &format!("{}/dashboard/jobs/%00%1b%5b31m", s.url),
        Some(&basic(&a)),
    );
    assert_eq!(status, 404);
    assert!(
        !html.contains('\u{0}') && !html.contains('\u{1b}'),
        "{html:?}"
    );
    let (status, _, html) = page(&format!("{}/dashboard?color=red", s.url), Some(&basic(&a)));
    assert_eq!(status, 400);
    assert!(html.contains("unknown query parameter"), "{html}");
    // The latest submission comes first.
    submit(
        &s.url,
        &a,
        &json!({"name": "later", "kind": "batch", "accelerators": 8, "duration_s": 3600.0}),
    );
    let (_, _, html) = page(&format!("{}/dashboard?show=all", s.url), Some(&basic(&a)));
    let (later, tagged) = (html.find(">later<"), html.find(">tagged<"));
    assert!(later.is_some() && later < tagged, "{html}");
    assert!(
        html.contains("<h2>Teams</h2>") && html.contains("<td>research</td>"),
        "{html}"
    );
    // The other tenant sees its own job and team, not the first one's.
    let (_, _, html) = page(&format!("{}/dashboard?show=all", s.url), Some(&basic(&b)));
    assert!(
        html.contains("<td>serving</td>") && !html.contains("<td>research</td>"),
        "{html}"
    );
    assert!(
        html.contains("other-tenants-job") && !html.contains("tagged"),
        "{html}"
    );
}

/// `token list` shows ids and holders (never tokens); `token revoke` takes a token or an id,
/// refuses what matches nothing, and a revoked token opens nothing.
fn token_management(db: String) {
    let tokens = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("token")
            .args(args)
            .args(["--db", &db])
            .output()
            .expect("run switchyard token");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let user = token(&db, "research", false);
    let admin = token(&db, "ops", true);
    let (code, out, err) = tokens(&["list", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let listed: Value = serde_json::from_str(&out).expect("JSON");
    let listed = listed.as_array().expect("an array").clone();
    assert_eq!(listed.len(), 2, "{out}");
    assert!(!out.contains(&user) && !out.contains(&admin), "{out}");
    let id_of = |tenant: &str| {
        listed
            .iter()
            .find(|t| t["tenant"] == tenant)
            .and_then(|t| t["id"].as_str())
            .expect("listed")
            .to_owned()
    };
    let (code, out, _) = tokens(&["list"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("tenant `ops` (admin)") && out.contains(&id_of("research")),
        "{out}"
    );

    let s = Server::start(&db);
    assert_eq!(
        call("GET", &format!("{}/v1/jobs", s.url), Some(&user), None).0,
        200
    );
    // By id (a prefix of it), then by the token itself.
    let (code, out, err) = tokens(&["revoke", &id_of("research")[..8]]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("tenant `research`"), "{out}");
    let (code, _, err) = tokens(&["revoke", &id_of("research")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no token with that id"), "{err}");
    let (code, _, err) = tokens(&["revoke", &admin]);
    assert_eq!(code, Some(0), "{err}");
    for bad in ["abc", "not-hex-at-all", "sy_"] {
        let (code, _, err) = tokens(&["revoke", bad]);
        assert_eq!(code, Some(2), "{bad}: {err}");
    }
    let (_, out, _) = tokens(&["list", "--json"]);
    assert_eq!(out.trim(), "[]");
    // A server started now does not know them (a running one forgets them within 30 s).
    drop(s);
    let s = Server::start(&db);
    assert_eq!(
        call("GET", &format!("{}/v1/jobs", s.url), Some(&user), None).0,
        401
    );
    assert_eq!(
        call("GET", &format!("{}/v1/jobs", s.url), Some(&admin), None).0,
        401
    );

    // A mistyped SQLite path is an error that names it, and leaves no new database behind.
    if let Some(path) = db.strip_prefix("sqlite://") {
        let typo = format!("{path}-typo");
        for verb in [&["list"][..], &["revoke", "3f9a1c0b"][..]] {
            let out = Command::new(BIN)
                .arg("token")
                .args(verb)
                .args(["--db", &format!("sqlite://{typo}")])
                .output()
                .expect("run switchyard token");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{verb:?}: {err}");
            assert!(
                err.contains("no database at") && err.contains(&typo),
                "{verb:?}: {err}"
            );
            assert!(
                !std::path::Path::new(&typo).exists(),
                "{verb:?} created {typo}"
            );
        }
        // An empty file is no database either, and is left empty.
        let empty = format!("{path}-empty");
        std::fs::write(&empty, "").expect("an empty file");
        let out = Command::new(BIN)
            .args(["token", "list", "--db", &format!("sqlite://{empty}")])
            .output()
            .expect("run switchyard token");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("(the file is empty)"), "{err}");
        assert_eq!(std::fs::metadata(&empty).expect("still there").len(), 0);
        let _ = std::fs::remove_file(&empty);
    }
}

/// A PostgreSQL address where nothing listens is named with the operating system's answer,
/// exit code 4 (cannot reach), not "pool timed out" ten seconds later; the password stays out.
#[test]
fn a_database_that_refuses_connections_is_named() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let url = format!("postgres://switchyard:hunter2@127.0.0.1:{port}/switchyard");
    let runs: [&[&str]; 2] = [
        &["server", "--db", &url, "--listen", "127.0.0.1:0"],
        &["token", "list", "--db", &url],
    ];
    for args in runs {
        let out = Command::new(BIN)
            .args(args)
            .env("SWITCHYARD_LOG", "off")
            .output()
            .expect("run switchyard");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "cannot connect to the database at 127.0.0.1:{port}"
            )) && err.to_lowercase().contains("refused"),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("timed out") && !err.contains("hunter2"),
            "{args:?}: {err}"
        );
    }
}

/// A database URL that does not parse is bad input (exit code 2) named with what is wrong,
/// and its password is not printed.
#[test]
fn a_malformed_database_url_is_named_without_its_password() {
    for (url, says) in [
        ("postgres://u:hunter2@db:badport/sy", "invalid port number"),
        ("postgres://u:hun@ter2@db:5432/sy?sslmode=bogus", "bogus"),
        ("mysql://root:hunter2@db/sy", "unsupported database URL"),
    ] {
        let out = Command::new(BIN)
            .args(["token", "list", "--db", url])
            .output()
            .expect("run switchyard");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert!(err.contains(says) && err.contains(":***@"), "{url}: {err}");
        assert!(
            !err.contains("hunter2") && !err.contains("ter2"),
            "{url}: {err}"
        );
    }
}

/// An SQLite file that cannot be opened is named, with what is wrong with its place.
#[test]
fn an_sqlite_file_that_cannot_be_opened_is_named() {
    let dir = std::env::temp_dir().join(format!("sy-open-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("a-directory.db")).expect("temp dir");
    std::fs::write(dir.join("a-file"), "").expect("a file");
    std::fs::write(dir.join("notes.txt"), "not a database\n".repeat(400)).expect("a file");
    for (file, says) in [
        ("missing/x.db", "missing does not exist"),
        ("a-directory.db", "it is a directory"),
        ("a-file/x.db", "a-file is not a directory"),
        ("notes.txt", "it is not an SQLite database"),
    ] {
        let path = dir.join(file);
        let url = format!("sqlite://{}", path.display());
        let out = Command::new(BIN)
            .args(["token", "create", "--tenant", "t", "--db", &url])
            .output()
            .expect("run switchyard");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert!(
            err.contains(&format!(
                "cannot open the SQLite database at {}",
                path.display()
            )) && err.contains(says),
            "{url}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A server started on a store whose active jobs its fleet cannot run (a cluster taken out, the
/// wrong fleet file) refuses to start, naming them, instead of rejecting them for good; with the
/// fleet they were submitted to, they are still there.
#[test]
fn a_fleet_that_cannot_run_the_stored_jobs_is_refused_at_start() {
    let db = fresh_db("sqlite").expect("sqlite");
    let t = token(&db, "research", false);
    let id = {
        let s = Server::start_with(&db, &["--lease", "1s"]);
        let (status, job) = submit(
            &s.url,
            &t,
            &json!({"kind": "training", "accelerators": 8, "duration_s": 1e6,
                    "clusters": ["colossus-1"]}),
        );
        assert_eq!(status, 201, "{job}");
        job["id"].as_str().expect("an id").to_owned()
    };
    // Killed, it leaves its lease in the store until it runs out: until then a server of
    // another fleet is told of that leader first (a_replica_with_another_fleet_…).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let gavel = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/fleets/gavel-48.toml"
    );
    let (code, err) = start_refused(&db, gavel);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "1 active job in the store cannot run on fleet gavel-48: {id} (it names no cluster \
             of this fleet (colossus-1))"
        )),
        "{err}"
    );
    let s = Server::start(&db);
    let job = job(&s.url, &t, &id);
    assert!(
        job["state"] == "running" || job["state"] == "pending",
        "{job}"
    );
}

/// Starts a server on `db` with `--fleet FLEET` that should refuse to start: its exit code and
/// what it said. A server that starts serves until stopped: it is stopped after 30 s (exit code
/// `None`), and the caller's checks fail.
fn start_refused(db: &str, fleet: &str) -> (Option<i32>, String) {
    let mut server = Command::new(BIN)
        .args([
            "server",
            "--db",
            db,
            "--listen",
            "127.0.0.1:0",
            "--fleet",
            fleet,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the server");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server.try_wait().expect("wait").is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = server.kill();
    let out = server.wait_with_output().expect("its output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A replica started with another fleet file than the running leader's is refused: it would
/// accept submissions the leader then rejects (and, leading later, reject running jobs).
#[test]
fn a_replica_with_another_fleet_than_the_leaders_is_refused_at_start() {
    let db = fresh_db("sqlite").expect("sqlite");
    let leader = Server::start(&db);
    wait_for(10, "a leader", || (leader.role() == "leader").then_some(()));
    // With active jobs the other fleet cannot run, the leader is what it is told first:
    // cancelling them would not get it started.
    let t = token(&db, "research", false);
    submit_job(
        &leader.url,
        &t,
        &json!({"kind": "batch", "accelerators": 8, "duration_s": 86_400.0,
                "clusters": ["colossus-1"]}),
    );
    let gavel = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/fleets/gavel-48.toml"
    );
    let (code, err) = start_refused(&db, gavel);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("runs fleet frontier-lab:")
            && err.contains("make fleet gavel-48:")
            && err.contains("every replica on one database must run the same fleet file"),
        "{err}"
    );
    // The same fleet is welcome, as a follower.
    let follower = Server::start(&db);
    assert_eq!(follower.role(), "follower");
}

macro_rules! both {
    ($($name:ident),*) => {
        mod sqlite { $( #[test] fn $name() { super::$name(super::fresh_db("sqlite").expect("sqlite")); } )* }
        mod postgres { $( #[test] fn $name() { if let Some(db) = super::fresh_db("postgres") { super::$name(db); } } )* }
    };
}

both!(
    lifecycle,
    tenant_isolation,
    error_codes,
    cli_verbs,
    scaling,
    big_pages,
    dashboard,
    token_management
);

#[test]
fn every_control_plane_verb_has_help_with_an_example() {
    for verb in [
        &["server"][..],
        &["token", "create"],
        &["submit"],
        &["status"],
        &["cancel"],
        &["scale"],
        &["events"],
        &["queue"],
    ] {
        let out = Command::new(BIN)
            .args(verb)
            .arg("--help")
            .output()
            .expect("run");
        assert!(out.status.success(), "{verb:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Example"),
            "{verb:?} --help has no example"
        );
    }
}

#[test]
fn a_listen_address_that_is_none_is_an_input_error() {
    let path = std::env::temp_dir().join(format!("sy-listen-{}.db", std::process::id()));
    let db = format!("sqlite://{}", path.display());
    let out = Command::new(BIN)
        .args(["server", "--db", &db, "--listen", "nonsense"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--listen") && err.contains("HOST:PORT"),
        "{err}"
    );
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// An address this machine cannot serve (here one in use) stops the server before it opens
/// the store: it exits 1, names the address, and leaves no new database behind.
#[test]
fn a_listen_address_in_use_leaves_no_database_behind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let path = std::env::temp_dir().join(format!("sy-in-use-{}.db", std::process::id()));
    let db = format!("sqlite://{}", path.display());
    let out = Command::new(BIN)
        .args(["server", "--db", &db, "--listen", &addr])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&addr), "{err}");
    assert!(!path.exists(), "{} was created", path.display());
    drop(taken);
}

/// A lease near the agents' orphan deadline is warned about at start (the listen address is
/// one that cannot be bound, so that the server stops right after).
#[test]
fn a_long_lease_with_agents_is_warned_about() {
    let path = std::env::temp_dir().join(format!("sy-lease-{}.db", std::process::id()));
    let db = format!("sqlite://{}", path.display());
    let stderr = |lease: &str| {
        let out = Command::new(BIN)
            .args(["server", "--db", &db, "--listen", "1.2.3.4:0", "--agents"])
            .args(["--lease", lease])
            .output()
            .expect("run");
        assert!(!out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let long = stderr("40s");
    assert!(long.contains("--lease is long for --agents"), "{long}");
    let short = stderr("3s");
    assert!(!short.contains("--lease is long"), "{short}");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[test]
fn bad_database_url_is_an_input_error() {
    let out = Command::new(BIN)
        .args(["server", "--db", "mysql://x", "--listen", "127.0.0.1:0"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sqlite://"));
}

/// A server URL that is not one is bad input (exit 2) that says why, not an unreachable
/// server (exit 4); a well-formed URL nobody answers is exit 4.
#[test]
fn bad_server_url_is_an_input_error() {
    for (url, expected) in [
        ("ftp://127.0.0.1:7070", "must start with http://"),
        ("http://[::1", "is not a valid URL"),
        ("http://:7070", "names no host"),
        ("http://a b", "is not a valid URL"),
        ("http://127.0.0.1:7070#frag", "query or fragment"),
        ("http://127.0.0.1:7070/?x=1", "query or fragment"),
        ("http://127.0.0.1:99999", "not a TCP port"),
        ("http://", "--url `http://` names no host"),
        (
            "http://127.0.0.1:7070/v1/",
            "ends in /v1: give the server's address",
        ),
    ] {
        let out = Command::new(BIN)
            .args(["queue", "--url", url, "--token", "t"])
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{url}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{url}: {err}");
    }
    // A URL from the environment is named by its variable: the user never typed --url.
    let out = Command::new(BIN)
        .args(["queue", "--token", "t"])
        .env("SWITCHYARD_URL", "ftp://127.0.0.1:7070")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SWITCHYARD_URL `ftp://127.0.0.1:7070` must start with http://"),
        "{err}"
    );
    // Typed as well, it is the flag's.
    let out = Command::new(BIN)
        .args(["queue", "--token", "t", "--url=ftp://127.0.0.1:7070"])
        .env("SWITCHYARD_URL", "ftp://127.0.0.1:7070")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--url `ftp://127.0.0.1:7070`"), "{err}");
    let out = Command::new(BIN)
        .args(["queue", "--url", "http://127.0.0.1:1", "--token", "t"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(4));
    // A token that cannot go in a header is bad input that says why, not an unreachable server.
    for (token, expected) in [("sy_ab\n", "a line break"), ("sy_ü", "'ü'")] {
        let out = Command::new(BIN)
            .args(["queue", "--url", "http://127.0.0.1:1", "--token", token])
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{token:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{token:?}: {err}");
    }
    let out = Command::new(BIN)
        .args([
            "status",
            "--url",
            "http://127.0.0.1:1",
            "--token",
            "t",
            "--limit",
            "0",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

/// A URL that answers but is no Switchyard server (an empty 404): the client says so, naming
/// the URL, instead of printing an empty message.
#[test]
fn an_answer_without_an_error_message_names_the_url() {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    let out = Command::new(BIN)
        .args(["status", "--url", &url, "--token", "sy_x"])
        .output()
        .expect("run switchyard status");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HTTP 404 with no error message from") && err.contains(&url),
        "{err}"
    );
}
