//! Communication between ranks over plain TCP: rank 0 is the coordinator, every other rank holds
//! one connection to it.
//!
//! The all-reduce is a gather to rank 0, a reduction there in rank order (0, 1, 2, …) regardless
//! of which rank's message arrived first, and a broadcast of the result. Every rank therefore
//! applies the very same bits. Any failed or timed-out read ends the run with an error: a gang
//! whose member died stops as a whole instead of hanging.
//!
//! Wire format (little endian): each message is a 4-byte magic `SYWL`, a 1-byte kind and a
//! kind-specific body.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::math::reduce_mean;

const MAGIC: &[u8; 4] = b"SYWL";
const VERSION: u32 = 2;
const HELLO: u8 = 1;
const WELCOME: u8 = 2;
const REJECT: u8 = 3;
const GRADIENT: u8 = 4;
const REDUCED: u8 = 5;
/// Longest job id or rejection reason accepted on the wire.
const MAX_TEXT: u32 = 4096;
/// Largest vector accepted on the wire.
const MAX_VALUES: u32 = 1 << 24;

/// Who this rank is and how to reach the others.
#[derive(Debug, Clone)]
pub struct CommConfig {
    /// This rank.
    pub rank: usize,
    /// Number of ranks.
    pub world_size: usize,
    /// Where rank 0 listens (host:port).
    pub master: String,
    /// Job id; ranks of another job are refused.
    pub job_id: String,
    /// Attempt number; ranks of an older attempt are refused.
    pub attempt: u64,
    /// Seed; ranks with another seed are refused.
    pub seed: u64,
    /// The training settings every rank must share (`dim=8 batch=4 …`); a rank with others
    /// is refused, naming both, since it would compute another model or stop at another step.
    pub settings: String,
    /// How long to wait for all ranks to join.
    pub join_timeout: Duration,
    /// How long to wait for a peer's message once training runs.
    pub peer_timeout: Duration,
}

/// Why communication failed.
#[derive(Debug, thiserror::Error)]
pub enum CommError {
    /// A socket operation failed (a peer died, the network was cut, a timeout passed).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Not every rank joined in time.
    #[error("timed out after {0:?} waiting for ranks to join ({1})")]
    JoinTimeout(Duration, String),
    /// A peer sent something unexpected.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The coordinator refused this rank.
    #[error("rank 0 refused this rank: {0}")]
    Rejected(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CommError {
    let what = what.into();
    move |source| CommError::Io { what, source }
}

/// The state rank 0 hands to every rank when the run (re)starts.
#[derive(Debug, Clone, PartialEq)]
pub struct StartState {
    /// Steps already done.
    pub step: u64,
    /// Weights to start from.
    pub weights: Vec<f64>,
    /// Momentum buffer to start from.
    pub velocity: Vec<f64>,
}

/// This rank's connections.
#[derive(Debug)]
pub enum Comm {
    /// A world of one: nothing to talk to.
    Single,
    /// Rank 0: one stream per other rank, index `i` holding rank `i + 1`.
    Coordinator(Vec<TcpStream>),
    /// Any other rank: the stream to rank 0.
    Worker(TcpStream),
}

// ---- framing helpers --------------------------------------------------------------------

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}
fn put_text(buf: &mut Vec<u8>, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(MAX_TEXT as usize)];
    put_u32(buf, bytes.len() as u32);
    buf.extend_from_slice(bytes);
}
fn put_values(buf: &mut Vec<u8>, vs: &[f64]) {
    put_u32(buf, vs.len() as u32);
    for v in vs {
        put_u64(buf, v.to_bits());
    }
}
fn header(kind: u8) -> Vec<u8> {
    let mut b = MAGIC.to_vec();
    b.push(kind);
    b
}

struct Reader<'a>(&'a mut TcpStream, &'a str);

impl Reader<'_> {
    fn exact<const N: usize>(&mut self) -> Result<[u8; N], CommError> {
        let mut b = [0u8; N];
        self.0
            .read_exact(&mut b)
            .map_err(io_err(format!("reading from {}", self.1)))?;
        Ok(b)
    }
    fn u32(&mut self) -> Result<u32, CommError> {
        Ok(u32::from_le_bytes(self.exact()?))
    }
    fn u64(&mut self) -> Result<u64, CommError> {
        Ok(u64::from_le_bytes(self.exact()?))
    }
    fn kind(&mut self) -> Result<u8, CommError> {
        let m: [u8; 4] = self.exact()?;
        if &m != MAGIC {
            return Err(CommError::Protocol(format!(
                "{} sent a bad magic {m:?}",
                self.1
            )));
        }
        Ok(self.exact::<1>()?[0])
    }
    fn text(&mut self) -> Result<String, CommError> {
        let n = self.u32()?;
        if n > MAX_TEXT {
            return Err(CommError::Protocol(format!(
                "{} sent {n} bytes of text",
                self.1
            )));
        }
        let mut b = vec![0u8; n as usize];
        self.0
            .read_exact(&mut b)
            .map_err(io_err(format!("reading from {}", self.1)))?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }
    fn values(&mut self) -> Result<Vec<f64>, CommError> {
        let n = self.u32()?;
        if n > MAX_VALUES {
            return Err(CommError::Protocol(format!("{} sent {n} values", self.1)));
        }
        (0..n).map(|_| self.u64().map(f64::from_bits)).collect()
    }
}

fn send(stream: &mut TcpStream, buf: &[u8], peer: &str) -> Result<(), CommError> {
    stream
        .write_all(buf)
        .map_err(io_err(format!("sending to {peer}")))
}

fn resolve(master: &str) -> Result<SocketAddr, CommError> {
    master
        .to_socket_addrs()
        .map_err(io_err(format!("resolving {master}")))?
        .next()
        .ok_or_else(|| CommError::Protocol(format!("{master} resolves to no address")))
}

// ---- joining ---------------------------------------------------------------------------

impl Comm {
    /// Joins the world: rank 0 listens on `master` and waits for every other rank to say hello
    /// and hands each the start state; other ranks connect (retrying until the join timeout) and
    /// receive it. `start` is rank 0's state (checkpoint or fresh); others pass `None`.
    pub fn establish(
        cfg: &CommConfig,
        start: Option<StartState>,
    ) -> Result<(Self, StartState), CommError> {
        if cfg.world_size <= 1 {
            let start = start.ok_or_else(|| CommError::Protocol("rank 0 has no state".into()))?;
            return Ok((Comm::Single, start));
        }
        if cfg.rank == 0 {
            let start = start.ok_or_else(|| CommError::Protocol("rank 0 has no state".into()))?;
            let streams = coordinate(cfg, &start)?;
            Ok((Comm::Coordinator(streams), start))
        } else {
            let (stream, start) = join(cfg)?;
            Ok((Comm::Worker(stream), start))
        }
    }

    /// The element-wise mean of every rank's `local` vector for `step`, reduced in rank order.
    pub fn allreduce_mean(&mut self, step: u64, local: &[f64]) -> Result<Vec<f64>, CommError> {
        match self {
            Comm::Single => Ok(local.to_vec()),
            Comm::Coordinator(streams) => {
                let mut parts = Vec::with_capacity(streams.len() + 1);
                parts.push(local.to_vec());
                for (i, s) in streams.iter_mut().enumerate() {
                    let peer = format!("rank {}", i + 1);
                    let mut r = Reader(s, &peer);
                    if r.kind()? != GRADIENT {
                        return Err(CommError::Protocol(format!("{peer} sent no gradient")));
                    }
                    let their_step = r.u64()?;
                    if their_step != step {
                        return Err(CommError::Protocol(format!(
                            "{peer} is at step {their_step}, rank 0 at {step}"
                        )));
                    }
                    let v = r.values()?;
                    if v.len() != local.len() {
                        return Err(CommError::Protocol(format!(
                            "{peer} sent {} values, expected {}",
                            v.len(),
                            local.len()
                        )));
                    }
                    parts.push(v);
                }
                let mean = reduce_mean(&parts);
                let mut msg = header(REDUCED);
                put_u64(&mut msg, step);
                put_values(&mut msg, &mean);
                for (i, s) in streams.iter_mut().enumerate() {
                    send(s, &msg, &format!("rank {}", i + 1))?;
                }
                Ok(mean)
            }
            Comm::Worker(s) => {
                let mut msg = header(GRADIENT);
                put_u64(&mut msg, step);
                put_values(&mut msg, local);
                send(s, &msg, "rank 0")?;
                let mut r = Reader(s, "rank 0");
                if r.kind()? != REDUCED {
                    return Err(CommError::Protocol("rank 0 sent no reduced vector".into()));
                }
                let their_step = r.u64()?;
                if their_step != step {
                    return Err(CommError::Protocol(format!(
                        "rank 0 reduced step {their_step}, this rank is at {step}"
                    )));
                }
                r.values()
            }
        }
    }
}

fn coordinate(cfg: &CommConfig, start: &StartState) -> Result<Vec<TcpStream>, CommError> {
    let addr = resolve(&cfg.master)?;
    let listener = TcpListener::bind(addr).map_err(io_err(format!("listening on {addr}")))?;
    listener
        .set_nonblocking(true)
        .map_err(io_err("setting the listener non-blocking"))?;
    let deadline = Instant::now() + cfg.join_timeout;
    let mut slots: Vec<Option<TcpStream>> = (1..cfg.world_size).map(|_| None).collect();
    while slots.iter().any(Option::is_none) {
        if Instant::now() >= deadline {
            let missing: Vec<String> = slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.is_none())
                .map(|(i, _)| (i + 1).to_string())
                .collect();
            return Err(CommError::JoinTimeout(
                cfg.join_timeout,
                format!("missing ranks {}", missing.join(", ")),
            ));
        }
        let (mut stream, from) = match listener.accept() {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => return Err(io_err("accepting a rank")(e)),
        };
        // A connection that misbehaves is dropped; the others still join.
        match greet(cfg, &mut stream, &from.to_string(), &slots) {
            Ok(rank) => {
                let mut msg = header(WELCOME);
                put_u64(&mut msg, start.step);
                put_values(&mut msg, &start.weights);
                put_values(&mut msg, &start.velocity);
                if send(&mut stream, &msg, &format!("rank {rank}")).is_ok() {
                    slots[rank - 1] = Some(stream);
                }
            }
            Err(reason) => {
                let mut msg = header(REJECT);
                put_text(&mut msg, &reason);
                let _ = stream.write_all(&msg);
                eprintln!("[rank 0] refused a connection from {from}: {reason}");
            }
        }
    }
    let mut streams = Vec::with_capacity(slots.len());
    for s in slots.into_iter().flatten() {
        prepare(&s, cfg.peer_timeout)?;
        streams.push(s);
    }
    Ok(streams)
}

/// Reads a hello and checks it belongs to this run; returns the rank.
fn greet(
    cfg: &CommConfig,
    stream: &mut TcpStream,
    from: &str,
    slots: &[Option<TcpStream>],
) -> Result<usize, String> {
    stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(Duration::from_secs(10))))
        .map_err(|e| e.to_string())?;
    let mut r = Reader(stream, from);
    let kind = r.kind().map_err(|e| e.to_string())?;
    if kind != HELLO {
        return Err(format!("expected a hello, got message kind {kind}"));
    }
    let version = r.u32().map_err(|e| e.to_string())?;
    if version != VERSION {
        return Err(format!("protocol version {version}, expected {VERSION}"));
    }
    let read = |r: &mut Reader| -> Result<(u32, u32, u64, u64, String, String), CommError> {
        Ok((r.u32()?, r.u32()?, r.u64()?, r.u64()?, r.text()?, r.text()?))
    };
    let (rank, world, seed, attempt, job, settings) = read(&mut r).map_err(|e| e.to_string())?;
    let (rank, world) = (rank as usize, world as usize);
    if job != cfg.job_id {
        return Err(format!("job {job:?}, this is job {:?}", cfg.job_id));
    }
    if attempt != cfg.attempt {
        return Err(format!(
            "attempt {attempt}, this is attempt {}",
            cfg.attempt
        ));
    }
    if world != cfg.world_size || seed != cfg.seed {
        return Err(format!(
            "world size {world} seed {seed}, expected {} and {}",
            cfg.world_size, cfg.seed
        ));
    }
    if settings != cfg.settings {
        return Err(format!(
            "settings `{settings}`, this run's are `{}`",
            cfg.settings
        ));
    }
    if rank == 0 || rank >= cfg.world_size {
        return Err(format!("rank {rank} out of range"));
    }
    if slots[rank - 1].is_some() {
        return Err(format!("rank {rank} already joined"));
    }
    Ok(rank)
}

fn prepare(s: &TcpStream, timeout: Duration) -> Result<(), CommError> {
    s.set_nonblocking(false)
        .and_then(|()| s.set_nodelay(true))
        .and_then(|()| s.set_read_timeout(Some(timeout)))
        .and_then(|()| s.set_write_timeout(Some(timeout)))
        .map_err(io_err("configuring a socket"))
}

fn join(cfg: &CommConfig) -> Result<(TcpStream, StartState), CommError> {
    let deadline = Instant::now() + cfg.join_timeout;
    loop {
        let last = match resolve(&cfg.master) {
            Ok(addr) => match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(stream) => match handshake(cfg, stream) {
                    Ok(joined) => return Ok(joined),
                    // Whoever listens there is not this attempt's rank 0 — a previous attempt's
                    // still going down, or another run's that got the port — or went away in
                    // the middle: this attempt's may come yet.
                    Err(e) if worth_another_try(&e, cfg.attempt) => e.to_string(),
                    Err(e) => return Err(e),
                },
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(CommError::JoinTimeout(
                cfg.join_timeout,
                format!("cannot join rank 0 at {}: {last}", cfg.master),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether rank 0's refusal (see [`greet`]) says it is not this rank's to join: another job's,
/// or an earlier attempt's (still going down). A later attempt's refusal means this rank is the
/// stale one, and it gives up at once.
/// Whether a failed handshake may yet be followed by one with this attempt's rank 0: the
/// connection broke, or rank 0 there belongs to another run or an earlier attempt.
fn worth_another_try(e: &CommError, attempt: u64) -> bool {
    match e {
        CommError::Io { .. } => true,
        CommError::Rejected(why) => not_ours(why, attempt),
        _ => false,
    }
}

fn not_ours(why: &str, attempt: u64) -> bool {
    why.starts_with("job ")
        || why
            .strip_prefix("attempt ")
            .and_then(|rest| rest.split_once(", this is attempt "))
            .and_then(|(_, theirs)| theirs.parse::<u64>().ok())
            .is_some_and(|theirs| theirs < attempt)
}

/// Says hello to rank 0 on `stream` and reads its answer.
fn handshake(
    cfg: &CommConfig,
    mut stream: TcpStream,
) -> Result<(TcpStream, StartState), CommError> {
    prepare(&stream, cfg.peer_timeout.max(cfg.join_timeout))?;
    let mut msg = header(HELLO);
    put_u32(&mut msg, VERSION);
    put_u32(&mut msg, cfg.rank as u32);
    put_u32(&mut msg, cfg.world_size as u32);
    put_u64(&mut msg, cfg.seed);
    put_u64(&mut msg, cfg.attempt);
    put_text(&mut msg, &cfg.job_id);
    put_text(&mut msg, &cfg.settings);
    send(&mut stream, &msg, "rank 0")?;
    let mut r = Reader(&mut stream, "rank 0");
    let start = match r.kind()? {
        WELCOME => StartState {
            step: r.u64()?,
            weights: r.values()?,
            velocity: r.values()?,
        },
        REJECT => return Err(CommError::Rejected(r.text()?)),
        k => return Err(CommError::Protocol(format!("rank 0 sent message kind {k}"))),
    };
    prepare(&stream, cfg.peer_timeout)?;
    Ok((stream, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind an ephemeral port")
    }

    fn cfg(rank: usize, world: usize, port: u16, attempt: u64) -> CommConfig {
        CommConfig {
            rank,
            world_size: world,
            master: format!("127.0.0.1:{port}"),
            job_id: "job-1".into(),
            attempt,
            seed: 7,
            settings: "dim=2 lr=0.1".into(),
            join_timeout: Duration::from_secs(60),
            peer_timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn threads_allreduce_in_rank_order_and_share_the_start_state() {
        let port = free_port();
        let world = 4;
        let start = StartState {
            step: 3,
            weights: vec![1.0, 2.0],
            velocity: vec![0.5, 0.25],
        };
        let handles: Vec<_> = (0..world)
            .map(|rank| {
                let c = cfg(rank, world, port, 1);
                let s = (rank == 0).then(|| start.clone());
                std::thread::spawn(move || {
                    let (mut comm, got) = Comm::establish(&c, s).expect("join");
                    // Rank r contributes [r, 1e16 if r==1, -1e16 if r==3 ...].
                    let local = vec![rank as f64, [0.0, 1e16, 1.0, -1e16][rank]];
                    let mean = comm.allreduce_mean(got.step, &local).expect("allreduce");
                    (got, mean)
                })
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        let expected_second: f64 = (((0.0 + 1e16) + 1.0) + -1e16) / 4.0;
        for (got, mean) in &results {
            assert_eq!(got, &start);
            assert_eq!(mean[0], 1.5);
            assert_eq!(mean[1].to_bits(), expected_second.to_bits());
        }
    }

    #[test]
    fn a_rank_of_another_attempt_is_refused() {
        let port = free_port();
        let coord = cfg(0, 2, port, 2);
        let start = StartState {
            step: 0,
            weights: vec![0.0],
            velocity: vec![0.0],
        };
        let mut coord_short = coord.clone();
        coord_short.join_timeout = Duration::from_secs(3);
        let h = std::thread::spawn(move || Comm::establish(&coord_short, Some(start)));
        let stale = cfg(1, 2, port, 1);
        match Comm::establish(&stale, None) {
            Err(CommError::Rejected(why)) => assert!(why.contains("attempt 1"), "{why}"),
            other => panic!("expected a rejection, got {other:?}"),
        }
        assert!(matches!(
            h.join().expect("thread"),
            Err(CommError::JoinTimeout(..))
        ));
    }

    /// A rank started with other training settings than rank 0's is refused, naming both.
    #[test]
    fn a_rank_with_other_settings_is_refused() {
        let port = free_port();
        let mut coord = cfg(0, 2, port, 1);
        coord.join_timeout = Duration::from_secs(3);
        let start = StartState {
            step: 0,
            weights: vec![0.0],
            velocity: vec![0.0],
        };
        let h = std::thread::spawn(move || Comm::establish(&coord, Some(start)));
        let mut other = cfg(1, 2, port, 1);
        other.settings = "dim=2 lr=0.2".into();
        match Comm::establish(&other, None) {
            Err(CommError::Rejected(why)) => assert_eq!(
                why,
                "settings `dim=2 lr=0.2`, this run's are `dim=2 lr=0.1`"
            ),
            other => panic!("expected a rejection, got {other:?}"),
        }
        assert!(h.join().expect("thread").is_err());
    }

    /// A rank that reaches someone else's rank 0 on its port — an earlier attempt's, still
    /// going down, or another run's that got the port — keeps trying until its own comes.
    #[test]
    fn a_rank_waits_out_an_earlier_attempts_coordinator() {
        let port = free_port();
        let start = StartState {
            step: 0,
            weights: vec![0.0],
            velocity: vec![0.0],
        };
        let mut old = cfg(0, 2, port, 1);
        old.join_timeout = Duration::from_millis(700);
        let old_coordinator = {
            let start = start.clone();
            std::thread::spawn(move || Comm::establish(&old, Some(start)))
        };
        std::thread::sleep(Duration::from_millis(100));
        let rank = std::thread::spawn(move || Comm::establish(&cfg(1, 2, port, 2), None));
        // The earlier attempt's coordinator gives up; this attempt's takes the port.
        assert!(old_coordinator.join().expect("thread").is_err());
        let (_, got) = Comm::establish(&cfg(0, 2, port, 2), Some(start)).expect("rank 0 joins");
        assert_eq!(got.step, 0);
        rank.join()
            .expect("thread")
            .expect("rank 1 joins its own attempt");
        assert!(not_ours("job \"x\", this is job \"y\"", 1));
        assert!(not_ours("attempt 3, this is attempt 2", 3));
        assert!(!not_ours("attempt 1, this is attempt 2", 1));
        assert!(!not_ours("rank 1 already joined", 1));
    }

    #[test]
    fn a_dead_peer_ends_the_allreduce_with_an_error() {
        let port = free_port();
        let start = StartState {
            step: 0,
            weights: vec![0.0],
            velocity: vec![0.0],
        };
        let c0 = cfg(0, 2, port, 1);
        let h = std::thread::spawn(move || {
            let (mut comm, _) = Comm::establish(&c0, Some(start)).expect("join");
            comm.allreduce_mean(0, &[1.0])
        });
        let (comm, _) = Comm::establish(&cfg(1, 2, port, 1), None).expect("join");
        drop(comm); // the worker "dies"
        assert!(h.join().expect("thread").is_err());
    }
}
