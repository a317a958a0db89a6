//! Issue 6 with real networking: three agents, each in its own network namespace with its own
//! address (a veth pair per namespace, routed through the root namespace), run a 4-rank gang of
//! the example workload. Mid-run one node is **cut off the network** (its host-side veth goes
//! down) instead of being killed. The server must declare it lost and restart the gang from its
//! last checkpoint on the other nodes, with the same final model as an uninterrupted run; the
//! cut-off agent keeps running. When the link comes back the node is `ready` again and its agent
//! stops the ranks of the old attempt that were still running there (level-triggered
//! reconciliation: they are not in its desired set any more).
//!
//! Needs root and `ip` (iproute2) with network-namespace support. Where the machine does not
//! allow it the test prints `SKIPPED: …` and passes, unless `SWITCHYARD_REQUIRE_NETNS=1`, which
//! turns the skip into a failure. Everything it creates (namespaces, veths, the `ip_forward`
//! sysctl, an iptables rule) is undone by a drop guard, also when an assertion fails.

mod agents_common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agents_common::*;

/// Namespace names are `sy-netns-<pid>-<n>`; host-side veths `syv<pid>n<n>` (≤ 15 bytes).
const NS_PREFIX: &str = "sy-netns-";
const VETH_PREFIX: &str = "syv";
/// The peer inside each namespace.
const INNER_VETH: &str = "veth0";
/// The sysctl that lets the root namespace route between the namespaces.
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
/// Its value before the first run that turned it on, so that a later run restores it when the
/// one that changed it died before its cleanup (cleared on reboot, like the sysctl).
const IP_FORWARD_NOTE: &str = "/run/switchyard-netns-test-ip_forward";
const NETNS_DIR: &str = "/var/run/netns";
/// Namespace `n` uses 10.231.X.0/30: X.1 on the host side, X.2 inside.
const SUBNET: &str = "10.231.0.0/16";

#[test]
fn a_gang_run_survives_an_agent_cut_off_the_network() {
    let lab = match Lab::setup(3) {
        Ok(lab) => lab,
        Err(why) => {
            if std::env::var("SWITCHYARD_REQUIRE_NETNS").as_deref() == Ok("1") {
                panic!("SWITCHYARD_REQUIRE_NETNS=1, but network namespaces are not usable: {why}");
            }
            eprintln!("SKIPPED: agents in network namespaces: {why}");
            return;
        }
    };
    let started = Instant::now();
    let dir = scratch("agents-netns");
    let fleet = fleet_file(&dir, 3, 2);
    let s = AgentServer::start(&dir, &fleet, "0.0.0.0:0");
    let port = s
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .expect("the server's port");
    let ip = lab.ip.to_string_lossy().into_owned();
    let mut agents: Vec<AgentProcess> = lab
        .namespaces
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            let name = format!("node-{}", i + 1);
            start_agent(
                &[&ip, "netns", "exec", &ns.name],
                &format!("http://{}:{port}", ns.host_addr),
                &s.agent_token,
                &name,
                &ns.addr.to_string(),
                2,
                &dir.join(format!("{name}.log")),
            )
        })
        .collect();
    s.wait_ready(3);
    // Each node registered with its namespace's own address.
    for (i, ns) in lab.namespaces.iter().enumerate() {
        let host = format!("node-{}", i + 1);
        let node = s
            .nodes()
            .into_iter()
            .find(|n| n["hostname"] == host.as_str())
            .expect("a registered node");
        assert_eq!(node["address"], ns.addr.to_string(), "{node}");
    }

    let job = s.submit_training(4, 60, 3);
    wait_for(120, "the run to pass step 50", || {
        (s.step(&job) >= 5 * CHECKPOINT_EVERY).then_some(())
    });
    let victim = wait_for(30, "a node running the job", || {
        s.nodes().into_iter().find(|n| {
            n["jobs"]
                .as_array()
                .is_some_and(|j| j.iter().any(|x| x == &job))
        })
    });
    let host = victim["hostname"].as_str().expect("hostname").to_owned();
    let index = agents
        .iter()
        .position(|a| a.name == host)
        .expect("the victim's agent process");
    let ns = &lab.namespaces[index];
    let cut_at_step = s.step(&job);
    let old_ranks = job_processes(&lab, &ns.name, &job);
    assert!(
        !old_ranks.is_empty(),
        "ranks of {job} run in {} before the cut",
        ns.name
    );
    // The ranks rendezvous across namespaces: MASTER_ADDR is a namespace's own address.
    let master = env_var(old_ranks[0], "MASTER_ADDR").unwrap_or_default();
    assert!(
        lab.namespaces.iter().any(|n| n.addr.to_string() == master),
        "MASTER_ADDR {master:?} is a node's namespace address"
    );
    eprintln!(
        "cutting {host} ({}, {}) off the network at step {cut_at_step}; its ranks: {old_ranks:?}",
        ns.name, ns.addr
    );
    lab.ip(&["link", "set", &ns.host_veth, "down"])
        .expect("cut the link");
    let cut = Instant::now();

    wait_for(30, &format!("{host} to be lost"), || {
        s.nodes()
            .into_iter()
            .find(|n| n["hostname"] == host.as_str() && n["state"] == "lost")
    });
    eprintln!("{host} lost after {:?}", cut.elapsed());
    assert!(
        agents[index]
            .child
            .try_wait()
            .expect("the agent's status")
            .is_none(),
        "the cut-off agent is still running"
    );

    let end = wait_final(&s, &job, 240);
    let events = s.events(&job);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(end["state"], "done", "{end}\nevents: {events:#?}");
    let lost = events
        .iter()
        .find(|e| e["kind"] == "node_lost")
        .unwrap_or_else(|| panic!("the loss is recorded: {kinds:?}"));
    assert!(
        lost["message"].as_str().is_some_and(|m| m.contains(&host)),
        "{lost}"
    );
    assert!(
        events
            .iter()
            .skip_while(|e| e["kind"] != "node_lost")
            .any(|e| e["kind"] == "restarted"),
        "a restart follows the loss: {kinds:?}"
    );
    assert!(end["restarts"].as_i64().is_some_and(|r| r >= 1), "{end}");
    let resumed: Vec<u64> = s
        .logs(&job)
        .iter()
        .filter(|l| l["attempt"].as_i64().is_some_and(|a| a >= 2))
        .filter_map(|l| {
            let line = l["line"].as_str()?;
            let rest = line.split("resuming from checkpoint step ").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect();
    assert!(
        resumed
            .iter()
            .any(|&step| step >= CHECKPOINT_EVERY && step <= cut_at_step + CHECKPOINT_EVERY),
        "a later attempt resumed from a checkpoint near step {cut_at_step}: {resumed:?}"
    );
    let reference = reference_model(&dir, 4);
    assert_eq!(s.final_model(&job), reference);
    // Cut off, not killed: the agent ran through all of it.
    assert!(
        agents[index]
            .child
            .try_wait()
            .expect("the agent's status")
            .is_none(),
        "the cut-off agent survived the partition"
    );
    let strays = job_processes(&lab, &ns.name, &job);
    eprintln!(
        "run done {:?} after the cut; ranks of the old attempt still in {}: {strays:?}",
        cut.elapsed(),
        ns.name
    );

    // Reconnect: the node comes back, and its agent stops what the server no longer wants.
    lab.ip(&["link", "set", &ns.host_veth, "up"])
        .expect("restore the link");
    let back = Instant::now();
    // Typically well under a second (the agent retries every 0.3–1.5 s); the bound covers a
    // request caught mid-flight on a dead connection (the agent's HTTP timeout is 30 s).
    wait_for(35, &format!("{host} to be ready again"), || {
        s.nodes()
            .into_iter()
            .find(|n| n["hostname"] == host.as_str() && n["state"] == "ready")
    });
    eprintln!("{host} ready {:?} after the link came back", back.elapsed());
    wait_for(
        30,
        &format!("the old attempt's ranks in {} to be stopped", ns.name),
        || job_processes(&lab, &ns.name, &job).is_empty().then_some(()),
    );
    eprintln!(
        "old ranks gone {:?} after the link came back",
        back.elapsed()
    );
    if !strays.is_empty() {
        // Each was stopped by its agent, or (racing the agent's first reconciliation, which
        // the link's return starts) ended itself when its connections to peers long gone were
        // reset: its agent saw it go.
        let log = strip_ansi(
            &std::fs::read_to_string(dir.join(format!("{host}.log"))).unwrap_or_default(),
        );
        let seen = |pid: u32, what: &str| {
            log.lines().any(|l| {
                l.contains(what)
                    && l.contains(&format!("{job}/attempt-1/"))
                    && l.contains(&format!("pid={pid}"))
            })
        };
        let stopped: Vec<u32> = strays
            .iter()
            .copied()
            .filter(|&pid| seen(pid, "SIGTERM"))
            .collect();
        eprintln!("{host}'s agent stopped (SIGTERM) the old attempt's pids {stopped:?}");
        for &pid in &strays {
            assert!(
                seen(pid, "SIGTERM") || seen(pid, "exited"),
                "{host}'s agent neither stopped nor saw the end of old rank {pid}:\n{log}"
            );
        }
    }
    // What the reconnected agent reported about the old attempt changes nothing.
    std::thread::sleep(Duration::from_secs(2));
    let after = s.job(&job);
    assert_eq!(after["state"], "done", "{after}");
    assert_eq!(s.final_model(&job), reference);
    assert!(
        agents[index]
            .child
            .try_wait()
            .expect("the agent's status")
            .is_none(),
        "the agent runs on after reconnecting"
    );
    eprintln!(
        "agents in network namespaces: passed in {:?}",
        started.elapsed()
    );

    agents.clear();
    drop(s);
    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Pids in namespace `ns` of processes started for `job` (their environment names it).
fn job_processes(lab: &Lab, ns: &str, job: &str) -> Vec<u32> {
    lab.pids(ns)
        .into_iter()
        .filter(|&pid| env_var(pid, "SWITCHYARD_JOB_ID").as_deref() == Some(job))
        .collect()
}

/// A variable of the environment process `pid` started with.
fn env_var(pid: u32, key: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{key}=");
    env.split(|&b| b == 0).find_map(|var| {
        var.strip_prefix(prefix.as_bytes())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

/// `text` without terminal colour sequences (`ESC [ … letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One namespace joined to the root namespace by a veth pair.
#[derive(Debug)]
struct Netns {
    name: String,
    /// The veth end in the root namespace (cut it to cut the namespace off).
    host_veth: String,
    /// The root namespace's address on that link: the namespace's gateway.
    host_addr: Ipv4Addr,
    /// The namespace's own address.
    addr: Ipv4Addr,
}

/// The namespaces and everything changed for them; undone on drop.
#[derive(Debug)]
struct Lab {
    ip: PathBuf,
    namespaces: Vec<Netns>,
    /// The value of `ip_forward` before it was set to 1, when it was changed.
    forward_before: Option<String>,
    /// The iptables binary, when an ACCEPT rule for the subnet was inserted into FORWARD.
    iptables_rule: Option<PathBuf>,
}

impl Lab {
    fn setup(count: u32) -> Result<Lab, String> {
        if !is_root() {
            return Err("not running as root (network namespaces need CAP_SYS_ADMIN)".into());
        }
        let ip = find_tool("ip").ok_or("no `ip` command (install iproute2)")?;
        let mut lab = Lab {
            ip,
            namespaces: Vec::new(),
            forward_before: None,
            iptables_rule: None,
        };
        lab.remove_stale();
        let pid = std::process::id();
        let octet = lab.free_octets(count)?;
        for n in 1..=count {
            let name = format!("{NS_PREFIX}{pid}-{n}");
            lab.ip(&["netns", "add", &name])
                .map_err(|e| format!("cannot create a network namespace: {e}"))?;
            let x = octet + n as u8 - 1;
            lab.namespaces.push(Netns {
                name: name.clone(),
                host_veth: format!("{VETH_PREFIX}{pid}n{n}"),
                host_addr: Ipv4Addr::new(10, 231, x, 1),
                addr: Ipv4Addr::new(10, 231, x, 2),
            });
            let ns = lab.namespaces.last().expect("just pushed");
            let (veth, host_net, net) = (
                ns.host_veth.clone(),
                format!("{}/30", ns.host_addr),
                format!("{}/30", ns.addr),
            );
            let gateway = ns.host_addr.to_string();
            let steps: [&[&str]; 7] = [
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", INNER_VETH, "netns",
                    &name,
                ],
                &["addr", "add", &host_net, "dev", &veth],
                &["link", "set", &veth, "up"],
                &["-n", &name, "link", "set", "lo", "up"],
                &["-n", &name, "addr", "add", &net, "dev", INNER_VETH],
                &["-n", &name, "link", "set", INNER_VETH, "up"],
                &["-n", &name, "route", "add", "default", "via", &gateway],
            ];
            for step in steps {
                lab.ip(step)
                    .map_err(|e| format!("cannot set up namespace {name}: {e}"))?;
            }
        }
        let forward = std::fs::read_to_string(IP_FORWARD)
            .map_err(|e| format!("cannot read {IP_FORWARD}: {e}"))?;
        if forward.trim() != "1" {
            std::fs::write(IP_FORWARD, "1")
                .map_err(|e| format!("cannot enable IPv4 forwarding ({IP_FORWARD}): {e}"))?;
            let _ = std::fs::write(IP_FORWARD_NOTE, forward.trim());
            lab.forward_before = Some(forward.trim().to_owned());
        } else if let Ok(noted) = std::fs::read_to_string(IP_FORWARD_NOTE) {
            // On because an earlier run turned it on (and maybe died before restoring it).
            lab.forward_before = Some(noted.trim().to_owned());
        }
        lab.open_forward_chain()?;
        lab.check_connectivity()?;
        Ok(lab)
    }

    /// Runs `ip ARGS`; its stdout, or why it failed.
    fn ip(&self, args: &[&str]) -> Result<String, String> {
        run(&self.ip, args)
    }

    /// Pids of the processes in namespace `ns`.
    fn pids(&self, ns: &str) -> Vec<u32> {
        self.ip(&["netns", "pids", ns])
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// Deletes namespaces (and their processes) and veths left by runs whose process is gone.
    fn remove_stale(&self) {
        let dead = |pid: &str| pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists();
        for line in self.ip(&["netns", "list"]).unwrap_or_default().lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            if let Some(rest) = name.strip_prefix(NS_PREFIX)
                && rest.split('-').next().is_some_and(dead)
            {
                eprintln!("removing the stale network namespace {name}");
                self.delete_namespace(name);
            }
        }
        for line in self
            .ip(&["-o", "link", "show", "type", "veth"])
            .unwrap_or_default()
            .lines()
        {
            // `7: syv123n1@if6: <…`
            let Some(name) = line.split(": ").nth(1).and_then(|n| n.split('@').next()) else {
                continue;
            };
            if let Some(rest) = name.strip_prefix(VETH_PREFIX)
                && rest.split('n').next().is_some_and(dead)
                && self.ip(&["link", "del", name]).is_ok()
            {
                eprintln!("removed the stale veth {name}");
            }
        }
    }

    /// Kills what still runs in namespace `name` (ours: agents' orphans) and deletes it.
    fn delete_namespace(&self, name: &str) {
        for pid in self.pids(name) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.ip(&["netns", "del", name]);
    }

    /// The first third octet X such that 10.231.X.0/24 … 10.231.(X+count-1).0/24 hold no address
    /// of the root namespace (so parallel runs on one machine do not collide).
    fn free_octets(&self, count: u32) -> Result<u8, String> {
        let addrs = self.ip(&["-4", "-o", "addr", "show"])?;
        let used = |x: u32| addrs.contains(&format!("inet 10.231.{x}."));
        let start = std::process::id() % 60 * 4 + 1;
        (0..60u32)
            .map(|k| (start - 1 + k * 4) % 240 + 1)
            .find(|&x| (x..x + count).all(|x| !used(x)))
            .map(|x| x as u8)
            .ok_or_else(|| "no free 10.231.X.0/24 block for the namespaces".into())
    }

    /// With iptables and a FORWARD policy of DROP, lets the namespaces' traffic through.
    fn open_forward_chain(&mut self) -> Result<(), String> {
        let Some(iptables) = find_tool("iptables") else {
            return Ok(());
        };
        let Ok(rules) = run(&iptables, &["-S", "FORWARD"]) else {
            return Ok(()); // no usable iptables here; the connectivity check decides
        };
        if rules.lines().any(|l| l.trim() == "-P FORWARD DROP") {
            run(
                &iptables,
                &["-I", "FORWARD", "-s", SUBNET, "-d", SUBNET, "-j", "ACCEPT"],
            )
            .map_err(|e| format!("the FORWARD chain drops packets and cannot be opened: {e}"))?;
            self.iptables_rule = Some(iptables);
        }
        Ok(())
    }

    /// A TCP connection from the first namespace to the second (routed through the root
    /// namespace) and to its gateway in the root namespace (where the server listens).
    fn check_connectivity(&self) -> Result<(), String> {
        let (a, b) = (&self.namespaces[0], &self.namespaces[1]);
        let in_b = in_netns(&b.name, {
            let addr = b.addr;
            move || TcpListener::bind((addr, 0))
        })?
        .map_err(|e| format!("cannot listen in {}: {e}", b.name))?;
        let on_host = TcpListener::bind((a.host_addr, 0))
            .map_err(|e| format!("cannot listen on {}: {e}", a.host_addr))?;
        for (what, listener) in [
            (format!("{} → {}", a.name, b.name), &in_b),
            (format!("{} → the root namespace", a.name), &on_host),
        ] {
            let to: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
            in_netns(&a.name, move || {
                TcpStream::connect_timeout(&to, Duration::from_secs(3))
            })?
            .map_err(|e| {
                format!("no TCP connection {what} ({to}): {e} (a firewall or missing forwarding?)")
            })?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            self.delete_namespace(&ns.name);
            // Deleting the namespace deletes the pair; this is for a half-made setup.
            let _ = self.ip(&["link", "del", &ns.host_veth]);
        }
        if let Some(iptables) = &self.iptables_rule {
            let _ = run(
                iptables,
                &["-D", "FORWARD", "-s", SUBNET, "-d", SUBNET, "-j", "ACCEPT"],
            );
        }
        if let Some(before) = &self.forward_before {
            // Another run of this test still using forwarding keeps it on; the last one
            // restores it.
            let pid = std::process::id();
            let others = self
                .ip(&["netns", "list"])
                .unwrap_or_default()
                .lines()
                .any(|l| {
                    l.strip_prefix(NS_PREFIX)
                        .and_then(|r| r.split('-').next())
                        .and_then(|p| p.parse::<u32>().ok())
                        .is_some_and(|p| {
                            p != pid && Path::new("/proc").join(p.to_string()).exists()
                        })
                });
            if !others {
                let _ = std::fs::write(IP_FORWARD, before);
                let _ = std::fs::remove_file(IP_FORWARD_NOTE);
            }
        }
    }
}

/// Runs `f` on a thread that has entered network namespace `ns`; sockets it creates stay in
/// that namespace.
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let path = Path::new(NETNS_DIR).join(ns);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("cannot enter {}: {e}", path.display()))?;
        Ok(f())
    })
    .join()
    .map_err(|_| "a namespace thread panicked".to_owned())?
}

fn run(program: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{} {}` failed ({}): {}",
            program.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `name` on PATH or in the sbin directories (not always on a non-login root PATH).
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}
