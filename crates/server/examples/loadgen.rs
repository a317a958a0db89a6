//! Load generator for the control plane: submits jobs over HTTP from many client threads and
//! reports sustained submissions per second and latency percentiles. Run it as its own process
//! against a running server (docs/benchmarks.md, "Control plane"):
//!
//! ```text
//! cargo run --release -p switchyard-server --example loadgen -- \
//!     --url http://127.0.0.1:7070 --token "$SWITCHYARD_TOKEN" --requests 20000 --concurrency 32
//! ```

use std::time::{Duration, Instant};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = arg(&args, "--url", "http://127.0.0.1:7070");
    let token = arg(
        &args,
        "--token",
        &std::env::var("SWITCHYARD_TOKEN").unwrap_or_default(),
    );
    let requests: usize = arg(&args, "--requests", "10000")
        .parse()
        .expect("--requests N");
    let concurrency: usize = arg(&args, "--concurrency", "32")
        .parse()
        .expect("--concurrency N");
    let duration_s: f64 = arg(&args, "--duration-s", "3600")
        .parse()
        .expect("--duration-s S");
    let tag = format!(
        "load-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let per = requests.div_ceil(concurrency);
    let start = Instant::now();
    let start_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let (url, token, tag) = (url.clone(), token.clone(), tag.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(60)))
                    .build()
                    .into();
                let mut lat = Vec::with_capacity(per);
                let mut errors = 0usize;
                for i in 0..per {
                    let body = format!(
                        r#"{{"name":"{tag}-{w}-{i}","kind":"batch","accelerators":1,"duration_s":{duration_s}}}"#
                    );
                    let t = Instant::now();
                    let res = agent
                        .post(format!("{url}/v1/jobs"))
                        .header("Authorization", format!("Bearer {token}"))
                        .header("Content-Type", "application/json")
                        .send(body.as_str());
                    match res {
                        Ok(mut r) if r.status().as_u16() == 201 => {
                            let _ = r.body_mut().read_to_string();
                            lat.push(t.elapsed());
                        }
                        Ok(mut r) => {
                            if errors == 0 {
                                eprintln!("{}: {}", r.status(), r.body_mut().read_to_string().unwrap_or_default());
                            }
                            errors += 1;
                        }
                        Err(e) => {
                            if errors == 0 {
                                eprintln!("transport error: {e}");
                            }
                            errors += 1;
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.join().expect("worker");
        lat.extend(l);
        errors += e;
    }
    let wall = start.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let (placed_p50, placed_p99, all_placed_s) = placement(&url, &token, &tag, start_unix_ms);
    println!(
        "{{\"accepted\": {}, \"errors\": {errors}, \"concurrency\": {concurrency}, \"wall_s\": {wall:.2}, \
         \"submissions_per_s\": {:.0}, \"p50_ms\": {:.2}, \"p99_ms\": {:.2}, \"max_ms\": {:.2}, \
         \"placement_p50_ms\": {placed_p50:.0}, \"placement_p99_ms\": {placed_p99:.0}, \"all_placed_s\": {all_placed_s:.2}}}",
        lat.len(),
        lat.len() as f64 / wall,
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
}

/// Waits (up to a minute) until none of this run's jobs is pending, then returns the p50 and
/// p99 of submission-to-start in ms and the seconds from the first submission until the last
/// job was placed.
fn placement(url: &str, token: &str, tag: &str, start_unix_ms: i64) -> (f64, f64, f64) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut waits = Vec::new();
        let mut last = start_unix_ms;
        let mut pending = 0usize;
        let mut after: Option<String> = None;
        loop {
            let mut u = format!("{url}/v1/jobs?limit=1000");
            if let Some(a) = &after {
                u.push_str(&format!("&after={a}"));
            }
            let page: serde_json::Value = agent
                .get(&u)
                .header("Authorization", format!("Bearer {token}"))
                .call()
                .and_then(|mut r| r.body_mut().read_json())
                .expect("list jobs");
            for j in page["jobs"].as_array().into_iter().flatten() {
                if !j["name"].as_str().is_some_and(|n| n.starts_with(tag)) {
                    continue;
                }
                match (j["submitted_ms"].as_i64(), j["started_ms"].as_i64()) {
                    (Some(s), Some(t)) => {
                        waits.push((t - s) as f64);
                        last = last.max(t);
                    }
                    _ => pending += 1,
                }
            }
            match page["next"].as_str() {
                Some(n) => after = Some(n.to_owned()),
                None => break,
            }
        }
        if pending == 0 || Instant::now() > deadline {
            let done = (last - start_unix_ms) as f64 / 1000.0;
            waits.sort_by(f64::total_cmp);
            let p = |q: f64| {
                waits
                    .get(((waits.len() as f64 * q).ceil() as usize).saturating_sub(1))
                    .copied()
                    .unwrap_or(f64::NAN)
            };
            return (p(0.5), p(0.99), done);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
