//! Loading and validating fleet TOML.
//!
//! The file is first deserialized into `Raw*` types that keep every value's byte span, then
//! validated into the domain types of [`super`]. Every error names the file, the line and column,
//! the field (as a path such as `clusters[2].topology.rack.nodes`) and what was expected.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::{
    Capacity, Cluster, ClusterBackend, Contract, Fleet, Level, LevelKind, Organisation, Provider,
    ProviderKind, Quota, Reserved, SlurmSettings, Team, Topology,
};
use crate::accelerator;
use crate::words::grouped;

/// Share of line rate assumed for collectives on a scale-out network when the fleet file does
/// not say: between standard Ethernet (about 0.6) and a tuned fabric such as Spectrum-X or
/// InfiniBand with adaptive routing (about 0.95).
pub const DEFAULT_NETWORK_EFFICIENCY: f64 = 0.8;

/// Most nodes in one cluster: 2^20, some forty times Colossus's 25,088.
pub const MAX_CLUSTER_NODES: u32 = 1 << 20;

/// Most accelerators in one cluster: 2^24, the largest device count a plan takes.
pub const MAX_CLUSTER_ACCELERATORS: u64 = 1 << 24;

/// The longest repair a fleet may give a cluster's nodes, hours (a year).
const MAX_REPAIR_HOURS: f64 = 8760.0;

/// Shortest node mean time between failures: one hour. Published fleets see thousands (Llama 3's
/// 16,384 H100 lost a node about every three hours: some 6,000 hours per node); below an hour
/// no run would ever reach a checkpoint, and a simulation would do nothing but fail nodes.
pub const MIN_NODE_MTBF_HOURS: f64 = 1.0;

/// Highest price per accelerator-hour: 10^6 USD, so the cost of a whole fleet over years is a
/// finite number.
pub const MAX_PRICE_PER_HOUR: f64 = 1e6;

/// Lowest bandwidth a link or a storage system may state, GB/s: 10 MB/s, far below any
/// accelerator link or training storage; below it a plan's step time and a simulation's
/// checkpoint writes would run to astronomical (and then infinite) figures.
pub const MIN_BANDWIDTH_GB_S: f64 = 0.01;

/// Longest restart time a cluster may state, seconds: a day (a run that takes longer to come
/// back than that is not restarting).
pub const MAX_RESTART_S: f64 = 86_400.0;

/// A fleet file that failed to load: where, which field, and what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}:{column}: {}{message}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
pub struct FleetError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Path of the offending field, e.g. `clusters[1].nodes`; empty for syntax errors.
    pub field: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    name: Option<Spanned<String>>,
    #[serde(default)]
    providers: Vec<Spanned<RawProvider>>,
    #[serde(default)]
    clusters: Vec<Spanned<RawCluster>>,
    #[serde(default)]
    tenants: Vec<Spanned<RawOrganisation>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: Spanned<String>,
    kind: Spanned<ProviderKind>,
    #[serde(default)]
    contracts: Vec<Spanned<RawContract>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContract {
    accelerator: Spanned<String>,
    reserved: Option<Spanned<RawReserved>>,
    on_demand_price: Option<Spanned<f64>>,
    spot_price: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReserved {
    accelerators: Spanned<i64>,
    price: Spanned<f64>,
    term_months: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: Spanned<String>,
    provider: Spanned<String>,
    region: Spanned<String>,
    accelerator: Spanned<String>,
    nodes: Spanned<i64>,
    accelerators_per_node: Option<Spanned<i64>>,
    capacity: Option<Spanned<Capacity>>,
    node_mtbf_hours: Option<Spanned<f64>>,
    accelerator_mtbf_hours: Option<Spanned<f64>>,
    repair_hours: Spanned<f64>,
    checkpoint_write_gb_s: Option<Spanned<f64>>,
    restart_s: Option<Spanned<f64>>,
    topology: Option<Spanned<RawTopology>>,
    backend: Option<Spanned<String>>,
    slurm: Option<Spanned<RawSlurm>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlurm {
    partition: Spanned<String>,
    rest_url: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
    account: Option<Spanned<String>>,
    log_dir: Option<Spanned<String>>,
    checkpoint_dir: Option<Spanned<String>>,
    command: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    scale_up: Option<Spanned<RawLevel>>,
    rack: Option<Spanned<RawLevel>>,
    block: Option<Spanned<RawLevel>>,
    cluster_gb_s: Option<Spanned<f64>>,
    network_efficiency: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLevel {
    nodes: Spanned<i64>,
    gb_s: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrganisation {
    name: Spanned<String>,
    weight: Option<Spanned<f64>>,
    #[serde(default)]
    quotas: Vec<Spanned<RawQuota>>,
    #[serde(default)]
    teams: Vec<Spanned<RawTeam>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeam {
    name: Spanned<String>,
    weight: Option<Spanned<f64>>,
    priority: Option<Spanned<i64>>,
    #[serde(default)]
    quotas: Vec<Spanned<RawQuota>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    cluster: Option<Spanned<String>>,
    accelerators: Spanned<i64>,
    borrowing_limit: Option<Spanned<i64>>,
}

/// Builds errors that point into one file.
struct Source<'a> {
    text: &'a str,
    file: &'a str,
}

impl Source<'_> {
    fn error(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> FleetError {
        let (line, column) = line_column(self.text, span.start);
        FleetError {
            file: self.file.to_owned(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }

    fn positive_count(
        &self,
        value: &Spanned<i64>,
        field: &str,
        what: &str,
    ) -> Result<u32, FleetError> {
        let n = *value.get_ref();
        if n <= 0 {
            return Err(self.error(
                value.span(),
                field,
                format!("expected a positive {what}, found {n}"),
            ));
        }
        u32::try_from(n).map_err(|_| {
            self.error(
                value.span(),
                field,
                format!("{what} {n} is larger than {}", u32::MAX),
            )
        })
    }

    fn positive_u64(
        &self,
        value: &Spanned<i64>,
        field: &str,
        what: &str,
    ) -> Result<u64, FleetError> {
        let n = *value.get_ref();
        u64::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| {
            self.error(
                value.span(),
                field,
                format!("expected a positive {what}, found {n}"),
            )
        })
    }

    fn positive_f64(
        &self,
        value: &Spanned<f64>,
        field: &str,
        what: &str,
    ) -> Result<f64, FleetError> {
        let x = *value.get_ref();
        if x.is_finite() && x > 0.0 {
            Ok(x)
        } else {
            Err(self.error(
                value.span(),
                field,
                format!("expected a positive {what}, found {}", shown(x)),
            ))
        }
    }

    /// A price per accelerator-hour: positive, and at most [`MAX_PRICE_PER_HOUR`] so that
    /// costs over years of a whole fleet stay finite numbers.
    fn price(&self, value: &Spanned<f64>, field: &str) -> Result<f64, FleetError> {
        let x = self.positive_f64(value, field, "price per accelerator-hour (USD)")?;
        if x > MAX_PRICE_PER_HOUR {
            return Err(self.error(
                value.span(),
                field,
                format!(
                    "price per accelerator-hour {} is larger than the supported maximum \
                     {MAX_PRICE_PER_HOUR} USD",
                    shown(x)
                ),
            ));
        }
        Ok(x)
    }

    /// A bandwidth, GB/s: positive and at least [`MIN_BANDWIDTH_GB_S`].
    fn bandwidth(&self, value: &Spanned<f64>, field: &str, what: &str) -> Result<f64, FleetError> {
        let x = self.positive_f64(value, field, what)?;
        if x < MIN_BANDWIDTH_GB_S {
            return Err(self.error(
                value.span(),
                field,
                format!(
                    "{what} {} is below the supported minimum of {MIN_BANDWIDTH_GB_S} GB/s \
                     (10 MB/s)",
                    shown(x)
                ),
            ));
        }
        Ok(x)
    }

    fn name(&self, value: &Spanned<String>, field: &str) -> Result<String, FleetError> {
        let name = value.get_ref().trim();
        if name.is_empty() {
            return Err(self.error(value.span(), field, "expected a non-empty name"));
        }
        // `|` separates names in a trace's lists (its `clusters` column).
        if name.chars().any(|c| c.is_control() || c == '/' || c == '|') {
            return Err(self.error(
                value.span(),
                field,
                format!(
                    "name {name:?} may not contain '/', '|' (it separates names in a trace's \
                     lists) or control characters"
                ),
            ));
        }
        Ok(name.to_owned())
    }

    /// Free text (a region): non-empty, without control characters; unlike a name it is never
    /// a key in a list, so `/` and `|` are fine.
    fn text(&self, value: &Spanned<String>, field: &str, what: &str) -> Result<String, FleetError> {
        let text = value.get_ref().trim();
        if text.is_empty() {
            return Err(self.error(value.span(), field, format!("expected a non-empty {what}")));
        }
        if text.chars().any(char::is_control) {
            return Err(self.error(
                value.span(),
                field,
                format!("{what} {text:?} may not contain control characters"),
            ));
        }
        Ok(text.to_owned())
    }
}

/// Why an `http://` URL is not slurmrestd's address alone: it needs a host, a port if any in
/// 1–65535, and no path (the backend adds `/slurm/v0.0.38/…` itself).
fn check_rest_address(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !path.trim_matches('/').is_empty() || authority.contains(['?', '#']) {
        return Err(
            "has a path or query: give slurmrestd's address alone, e.g. http://host:6820 (the \
             backend adds /slurm/v0.0.38/… itself)"
                .into(),
        );
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => return Err("has an unclosed '[' in its host".into()),
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err("names no host (e.g. http://slurm-head:6820)".into());
    }
    if authority.contains('@') {
        return Err(
            "has a user name in it: slurmrestd's user comes from the token (`token_env`)".into(),
        );
    }
    let host_chars = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
    if !host.chars().all(host_chars) {
        return Err(format!(
            "has host `{host}`, which is no host name or address (letters, digits, '.', '-')"
        ));
    }
    if let Some(port) = port
        && !matches!(port.parse::<u16>(), Ok(1..))
    {
        return Err(format!(
            "has port `{port}`, which is not a TCP port (1 to 65535)"
        ));
    }
    Ok(())
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before[nl + 1..].chars().count()
    }) + 1;
    (line, column)
}

/// The key written on the line that holds `offset` (`nodes` in `nodes = "many"`), for errors that
/// the TOML parser reports by position only; inside an inline value, down to its element and
/// key (`quotas[1].borrowing_limit`), on the assignment's line or the lines it continues on.
fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let start = text
        .get(..offset)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |nl| nl + 1);
    let line = text.get(start..).unwrap_or("").lines().next().unwrap_or("");
    let join = |table: String, key: &str| {
        if table.is_empty() {
            key.to_owned()
        } else {
            format!("{table}.{key}")
        }
    };
    if let Some((key_line, inner)) = text.get(..offset).and_then(value_path) {
        // The table is the one the assignment's own line is in.
        let line_start = text
            .get(..key_line)
            .and_then(|t| t.rfind('\n'))
            .map_or(0, |nl| nl + 1);
        let assignment = text
            .get(line_start..)
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("");
        return join(
            table_path(text.get(..line_start).unwrap_or(""), assignment),
            &inner,
        );
    }
    let table = table_path(text.get(..start).unwrap_or(""), line);
    match line.split_once('=') {
        Some((key, _)) if !key.trim_start().starts_with('[') => join(table, key.trim()),
        _ => table,
    }
}

/// Where the end of `before` (a TOML file up to an offset) lies when that is inside an inline
/// value (`quotas = [{ a = 1 }, { b = [2, 3`): the offset of its assignment's key and the path
/// from that key (`quotas[1].b[1]`). `None` outside one. Strings and comments are skipped; an
/// inline table's key counts once its `=` is passed.
fn value_path(before: &str) -> Option<(usize, String)> {
    enum Frame {
        Array(usize),
        Table(Option<String>),
    }
    let mut stack: Vec<Frame> = Vec::new();
    // The current assignment's key at the top level, and where it starts.
    let mut top: Option<(usize, String)> = None;
    let mut word = String::new();
    let mut word_at = 0;
    let mut chars = before.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '\n' => {
                if stack.is_empty() {
                    top = None;
                }
                word.clear();
            }
            '#' => {
                // A comment, to the end of its line.
                while chars.next_if(|&(_, c)| c != '\n').is_some() {}
            }
            '"' | '\'' => {
                let mut quoted = String::new();
                while let Some((_, q)) = chars.next() {
                    if q == '\\' && c == '"' {
                        chars.next();
                    } else if q == c {
                        break;
                    } else {
                        quoted.push(q);
                    }
                }
                word = quoted;
                word_at = at;
            }
            '[' if stack.is_empty() && top.is_none() => {
                // A table header (`[a.b]`, `[[c]]`): nothing of it is a value.
                while chars.next_if(|&(_, c)| c != '\n').is_some() {}
            }
            '[' => {
                stack.push(Frame::Array(0));
                word.clear();
            }
            '{' => {
                stack.push(Frame::Table(None));
                word.clear();
            }
            ']' | '}' => {
                stack.pop();
                word.clear();
            }
            ',' => {
                if let Some(Frame::Array(i)) = stack.last_mut() {
                    *i += 1;
                }
                word.clear();
            }
            '=' => {
                match stack.last_mut() {
                    Some(Frame::Table(key)) => *key = Some(std::mem::take(&mut word)),
                    Some(Frame::Array(_)) => {}
                    None => top = Some((word_at, std::mem::take(&mut word))),
                }
                word.clear();
            }
            c if c.is_alphanumeric() || c == '_' || c == '-' || (c == '.' && stack.is_empty()) => {
                if word.is_empty() {
                    word_at = at;
                }
                word.push(c);
            }
            c if c.is_whitespace() => {}
            _ => word.clear(),
        }
    }
    if stack.is_empty() {
        return None;
    }
    let (key_at, key) = top?;
    let mut path = key.trim().to_owned();
    for frame in &stack {
        match frame {
            Frame::Array(i) => path.push_str(&format!("[{i}]")),
            Frame::Table(Some(key)) => {
                path.push('.');
                path.push_str(key.trim());
            }
            Frame::Table(None) => {}
        }
    }
    Some((key_at, path))
}

/// The path of the table a line belongs to (`clusters[1]`, `tenants[0].teams[2]`), from the
/// table headers before it (`before`) and the line itself if it is one.
fn table_path(before: &str, line: &str) -> String {
    // Per array-of-tables path, how many elements so far; per path, the index of its last one.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut current = String::new();
    for l in before.lines().chain(std::iter::once(line)) {
        let l = l.trim();
        let (array, name) = if let Some(n) = l.strip_prefix("[[").and_then(|r| r.split_once("]]")) {
            (true, n.0.trim())
        } else if let Some(n) = l.strip_prefix('[').and_then(|r| r.split_once(']')) {
            (false, n.0.trim())
        } else {
            continue;
        };
        // Resolve each dotted part against the arrays seen so far: `tenants.teams` is the
        // current tenant's teams.
        let mut path = String::new();
        let parts: Vec<&str> = name.split('.').map(str::trim).collect();
        for (i, part) in parts.iter().enumerate() {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(part);
            let last = i + 1 == parts.len();
            if last && array {
                let n = counts.entry(path.clone()).or_insert(0);
                *n += 1;
                let index = *n - 1;
                // A new element starts its nested arrays afresh.
                let prefix = format!("{path}[{index}].");
                counts.retain(|k, _| !k.starts_with(&format!("{path}[")) || k.starts_with(&prefix));
                path = format!("{path}[{index}]");
            } else if let Some(&n) = counts.get(&path) {
                path = format!("{path}[{}]", n.saturating_sub(1));
            }
        }
        current = path;
    }
    current
}

/// Tracks names already used in one namespace.
struct Names<'a> {
    what: &'a str,
    seen: BTreeMap<String, usize>,
}

impl<'a> Names<'a> {
    fn new(what: &'a str) -> Self {
        Self {
            what,
            seen: BTreeMap::new(),
        }
    }

    fn insert(
        &mut self,
        src: &Source<'_>,
        name: &str,
        value: &Spanned<String>,
        field: &str,
    ) -> Result<(), FleetError> {
        if let Some(first_line) = self.seen.get(name) {
            return Err(src.error(
                value.span(),
                field,
                format!(
                    "duplicate {} name {name:?} (first defined on line {first_line})",
                    self.what
                ),
            ));
        }
        self.seen
            .insert(name.to_owned(), line_column(src.text, value.span().start).0);
        Ok(())
    }

    /// Refuses `name`, a `what` (another kind of name), when it is one of these names.
    fn clashes_with(
        &self,
        src: &Source<'_>,
        name: &str,
        value: &Spanned<String>,
        field: &str,
        what: &str,
    ) -> Result<(), FleetError> {
        let article = if self.what.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        match self.seen.get(name) {
            Some(line) => Err(src.error(
                value.span(),
                field,
                format!(
                    "{what} name {name:?} is also {article} {} name (line {line}): tenants are \
                     named by team, and a name must say which it is",
                    self.what
                ),
            )),
            None => Ok(()),
        }
    }
}

pub(super) fn load(text: &str, file: &str) -> Result<Fleet, FleetError> {
    let src = Source { text, file };
    let raw: RawFleet = toml::from_str(text).map_err(|err| {
        let span = err.span().unwrap_or(0..0);
        // Type names read as ranges, and a number past TOML's 64 bits as too large.
        let message = crate::plain_toml_words(err.message().trim_end());
        src.error(span.clone(), key_at(text, span.start), message)
    })?;

    let name = match &raw.name {
        Some(name) => src.name(name, "name")?,
        None => "fleet".to_owned(),
    };

    let mut provider_names = Names::new("provider");
    let mut providers = Vec::with_capacity(raw.providers.len());
    for (i, p) in raw.providers.iter().enumerate() {
        providers.push(provider(&src, p.get_ref(), i, &mut provider_names)?);
    }

    if raw.clusters.is_empty() {
        return Err(src.error(
            0..0,
            "clusters",
            "a fleet needs at least one [[clusters]] entry",
        ));
    }
    let mut cluster_names = Names::new("cluster");
    let mut clusters = Vec::with_capacity(raw.clusters.len());
    for (i, c) in raw.clusters.iter().enumerate() {
        clusters.push(cluster(
            &src,
            c.get_ref(),
            i,
            &providers,
            &mut cluster_names,
        )?);
    }
    check_reserved_capacity(&src, &raw, &providers, &clusters)?;
    check_slurm_partitions(&src, &raw, &clusters)?;

    let cluster_set: HashSet<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
    let cluster_sizes: HashMap<&str, u64> = clusters
        .iter()
        .map(|c| (c.name.as_str(), c.accelerators()))
        .collect();
    let mut org_names = Names::new("organisation");
    let mut team_names = Names::new("team");
    let mut tenants = Vec::with_capacity(raw.tenants.len());
    for (i, o) in raw.tenants.iter().enumerate() {
        tenants.push(organisation(
            &src,
            o.get_ref(),
            i,
            &cluster_set,
            &cluster_sizes,
            &mut org_names,
            &mut team_names,
        )?);
    }

    Ok(Fleet {
        name,
        providers,
        clusters,
        tenants,
    })
}

fn provider(
    src: &Source<'_>,
    raw: &RawProvider,
    i: usize,
    names: &mut Names<'_>,
) -> Result<Provider, FleetError> {
    let at = format!("providers[{i}]");
    let name = src.name(&raw.name, &format!("{at}.name"))?;
    names.insert(src, &name, &raw.name, &format!("{at}.name"))?;
    let mut seen = Names::new("contract accelerator");
    let mut contracts = Vec::with_capacity(raw.contracts.len());
    for (j, c) in raw.contracts.iter().enumerate() {
        let c = c.get_ref();
        let at = format!("{at}.contracts[{j}]");
        let accel = known_accelerator(src, &c.accelerator, &format!("{at}.accelerator"))?;
        let canonical = Spanned::new(c.accelerator.span(), accel.name.to_owned());
        seen.insert(src, accel.name, &canonical, &format!("{at}.accelerator"))?;
        let reserved = match &c.reserved {
            Some(r) => {
                let r = r.get_ref();
                Some(Reserved {
                    accelerators: src.positive_u64(
                        &r.accelerators,
                        &format!("{at}.reserved.accelerators"),
                        "accelerator count",
                    )?,
                    price: src.price(&r.price, &format!("{at}.reserved.price"))?,
                    term_months: src.positive_count(
                        &r.term_months,
                        &format!("{at}.reserved.term_months"),
                        "term in months",
                    )?,
                })
            }
            None => None,
        };
        let on_demand_price = c
            .on_demand_price
            .as_ref()
            .map(|p| src.price(p, &format!("{at}.on_demand_price")))
            .transpose()?;
        let spot_price = c
            .spot_price
            .as_ref()
            .map(|p| src.price(p, &format!("{at}.spot_price")))
            .transpose()?;
        if reserved.is_none() && on_demand_price.is_none() && spot_price.is_none() {
            return Err(src.error(
                c.accelerator.span(),
                at,
                "a contract needs at least one of `reserved`, `on_demand_price` or `spot_price`",
            ));
        }
        contracts.push(Contract {
            accelerator: accel.name.to_owned(),
            reserved,
            on_demand_price,
            spot_price,
        });
    }
    Ok(Provider {
        name,
        kind: *raw.kind.get_ref(),
        contracts,
    })
}

fn known_accelerator(
    src: &Source<'_>,
    name: &Spanned<String>,
    field: &str,
) -> Result<&'static accelerator::Accelerator, FleetError> {
    accelerator::lookup(name.get_ref()).ok_or_else(|| {
        src.error(
            name.span(),
            field,
            format!(
                "unknown accelerator {:?}; expected one of: {} (see `switchyard fleet accelerators`)",
                name.get_ref(),
                accelerator::names().join(", ")
            ),
        )
    })
}

fn cluster(
    src: &Source<'_>,
    raw: &RawCluster,
    i: usize,
    providers: &[Provider],
    names: &mut Names<'_>,
) -> Result<Cluster, FleetError> {
    let at = format!("clusters[{i}]");
    let name = src.name(&raw.name, &format!("{at}.name"))?;
    names.insert(src, &name, &raw.name, &format!("{at}.name"))?;
    let provider_name = src.name(&raw.provider, &format!("{at}.provider"))?;
    let Some(provider) = providers.iter().find(|p| p.name == provider_name) else {
        let known: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
        return Err(src.error(
            raw.provider.span(),
            format!("{at}.provider"),
            format!(
                "unknown provider {provider_name:?}; the fleet defines: {}",
                list_or_none(&known)
            ),
        ));
    };
    let region = src.text(&raw.region, &format!("{at}.region"), "region")?;
    let accel = known_accelerator(src, &raw.accelerator, &format!("{at}.accelerator"))?;
    let nodes = src.positive_count(&raw.nodes, &format!("{at}.nodes"), "node count")?;
    let per_node = match &raw.accelerators_per_node {
        Some(n) => src.positive_count(
            n,
            &format!("{at}.accelerators_per_node"),
            "accelerator count per node",
        )?,
        None => accel.per_node,
    };
    if nodes > MAX_CLUSTER_NODES {
        return Err(src.error(
            raw.nodes.span(),
            format!("{at}.nodes"),
            format!("node count {nodes} is larger than the supported maximum {MAX_CLUSTER_NODES}"),
        ));
    }
    let accelerators = u64::from(nodes) * u64::from(per_node);
    if accelerators > MAX_CLUSTER_ACCELERATORS {
        let span = raw
            .accelerators_per_node
            .as_ref()
            .map_or(raw.nodes.span(), Spanned::span);
        return Err(src.error(
            span,
            format!("{at}.accelerators_per_node"),
            format!(
                "{nodes} {} of {per_node} accelerators make {accelerators}, more than the \
                 supported maximum {MAX_CLUSTER_ACCELERATORS} per cluster",
                if nodes == 1 { "node" } else { "nodes" }
            ),
        ));
    }
    let capacity = raw
        .capacity
        .as_ref()
        .map_or(Capacity::Reserved, |c| *c.get_ref());

    let contract = provider
        .contracts
        .iter()
        .find(|c| c.accelerator == accel.name);
    let price = contract.and_then(|c| match capacity {
        Capacity::Reserved => c.reserved.as_ref().map(|r| r.price),
        Capacity::OnDemand => c.on_demand_price,
        Capacity::Spot => c.spot_price,
    });
    let Some(price) = price else {
        let kind = match capacity {
            Capacity::Reserved => "reserved",
            Capacity::OnDemand => "on_demand_price",
            Capacity::Spot => "spot_price",
        };
        let span = raw
            .capacity
            .as_ref()
            .map_or(raw.accelerator.span(), Spanned::span);
        return Err(src.error(
            span,
            format!("{at}.capacity"),
            format!(
                "provider {provider_name:?} has no contract with `{kind}` for {}; add one under its [[providers.contracts]]",
                accel.name
            ),
        ));
    };

    let node_mtbf_hours = match (&raw.node_mtbf_hours, &raw.accelerator_mtbf_hours) {
        (Some(n), None) => src.positive_f64(
            n,
            &format!("{at}.node_mtbf_hours"),
            "mean time between failures (hours)",
        )?,
        (None, Some(a)) => {
            src.positive_f64(
                a,
                &format!("{at}.accelerator_mtbf_hours"),
                "mean time between failures (hours)",
            )? / f64::from(per_node)
        }
        (Some(n), Some(_)) => {
            return Err(src.error(
                n.span(),
                format!("{at}.node_mtbf_hours"),
                "give either `node_mtbf_hours` or `accelerator_mtbf_hours`, not both",
            ));
        }
        (None, None) => {
            return Err(src.error(
                raw.name.span(),
                at,
                "missing failure rate: give `node_mtbf_hours` or `accelerator_mtbf_hours`",
            ));
        }
    };
    if node_mtbf_hours < MIN_NODE_MTBF_HOURS {
        let span = raw
            .node_mtbf_hours
            .as_ref()
            .or(raw.accelerator_mtbf_hours.as_ref())
            .map_or(raw.name.span(), Spanned::span);
        let (field, per_accelerator) = if raw.node_mtbf_hours.is_some() {
            ("node_mtbf_hours", String::new())
        } else {
            (
                "accelerator_mtbf_hours",
                format!(" (accelerator_mtbf_hours divided by {per_node} accelerators per node)"),
            )
        };
        return Err(src.error(
            span,
            format!("{at}.{field}"),
            format!(
                "a node fails every {node_mtbf_hours} hours on average{per_accelerator}; the \
                 supported minimum is {MIN_NODE_MTBF_HOURS} hour (published fleets see thousands \
                 of hours)"
            ),
        ));
    }
    let repair_hours = {
        let r = *raw.repair_hours.get_ref();
        // (Infinity is refused as longer than the maximum, below.)
        if r.is_nan() || r < 0.0 {
            return Err(src.error(
                raw.repair_hours.span(),
                format!("{at}.repair_hours"),
                format!("expected a repair time of zero or more hours, found {r}"),
            ));
        }
        // A node out for longer is gone, not in repair (and a simulation waits out 100 repair
        // times for a job that needs every node).
        if r > MAX_REPAIR_HOURS {
            return Err(src.error(
                raw.repair_hours.span(),
                format!("{at}.repair_hours"),
                format!(
                    "a repair of {r} hours is longer than the supported maximum of \
                     {MAX_REPAIR_HOURS} hours (a year): a node out that long is gone — give the \
                     cluster fewer nodes instead"
                ),
            ));
        }
        r
    };
    let checkpoint_write_gb_s = raw
        .checkpoint_write_gb_s
        .as_ref()
        .map(|w| {
            src.bandwidth(
                w,
                &format!("{at}.checkpoint_write_gb_s"),
                "aggregate checkpoint write bandwidth (GB/s)",
            )
        })
        .transpose()?;
    let restart_s = raw
        .restart_s
        .as_ref()
        .map(|r| {
            let x = *r.get_ref();
            if x.is_finite() && (0.0..=MAX_RESTART_S).contains(&x) {
                Ok(x)
            } else {
                Err(src.error(
                    r.span(),
                    format!("{at}.restart_s"),
                    format!(
                        "expected a training run's restart time from 0 to {MAX_RESTART_S} s \
                         (one day), found {}",
                        shown(x)
                    ),
                ))
            }
        })
        .transpose()?;
    let topology = topology(src, raw, &at, accel, nodes, per_node)?;
    let backend = backend(src, raw, &at)?;

    Ok(Cluster {
        name,
        provider: provider_name,
        region,
        accelerator: accel,
        nodes,
        accelerators_per_node: per_node,
        capacity,
        topology,
        node_mtbf_hours,
        repair_hours,
        checkpoint_write_gb_s,
        restart_s,
        price_per_accelerator_hour: price,
        backend,
    })
}

/// `backend = "agents" | "slurm"` and, for Slurm, its `[clusters.slurm]` table.
fn backend(src: &Source<'_>, raw: &RawCluster, at: &str) -> Result<ClusterBackend, FleetError> {
    let kind = raw.backend.as_ref().map(|b| (b.get_ref().trim(), b.span()));
    match (kind, &raw.slurm) {
        (None | Some(("agents", _)), None) => Ok(ClusterBackend::Agents),
        (None | Some(("agents", _)), Some(s)) => Err(src.error(
            s.span(),
            format!("{at}.slurm"),
            "a [clusters.slurm] table needs `backend = \"slurm\"`",
        )),
        (Some(("slurm", span)), None) => Err(src.error(
            span,
            format!("{at}.backend"),
            "`backend = \"slurm\"` needs a [clusters.slurm] table with at least `partition`",
        )),
        (Some(("slurm", _)), Some(s)) => {
            let s = s.get_ref();
            let at = format!("{at}.slurm");
            let text =
                |v: &Option<Spanned<String>>, key: &str| -> Result<Option<String>, FleetError> {
                    match v {
                        Some(v) if v.get_ref().trim().is_empty() => Err(src.error(
                            v.span(),
                            format!("{at}.{key}"),
                            "expected a non-empty value",
                        )),
                        Some(v) => Ok(Some(v.get_ref().trim().to_owned())),
                        None => Ok(None),
                    }
                };
            let partition = src.name(&s.partition, &format!("{at}.partition"))?;
            let rest_url = text(&s.rest_url, "rest_url")?;
            let token_env = text(&s.token_env, "token_env")?;
            if let (Some(url), Some(span)) = (&rest_url, s.rest_url.as_ref().map(Spanned::span)) {
                if !url.starts_with("http://") {
                    return Err(src.error(
                        span,
                        format!("{at}.rest_url"),
                        format!(
                            "expected an http:// URL of slurmrestd, found {url:?} (the server \
                             speaks no TLS to it: put slurmrestd behind a local proxy or tunnel)"
                        ),
                    ));
                }
                if let Err(why) = check_rest_address(url) {
                    return Err(src.error(
                        span,
                        format!("{at}.rest_url"),
                        format!("{url:?} {why}"),
                    ));
                }
                if token_env.is_none() {
                    return Err(src.error(
                        span,
                        format!("{at}.token_env"),
                        "`rest_url` needs `token_env`, the environment variable holding the slurmrestd token",
                    ));
                }
            }
            if let (None, Some(token)) = (&rest_url, &s.token_env) {
                return Err(src.error(
                    token.span(),
                    format!("{at}.token_env"),
                    "`token_env` names slurmrestd's token, and there is no `rest_url`: give \
                     both (slurmrestd), or neither (the command-line tools)",
                ));
            }
            if partition.chars().any(char::is_whitespace) {
                return Err(src.error(
                    s.partition.span(),
                    format!("{at}.partition"),
                    format!("partition {partition:?} contains white space, which no Slurm partition name has"),
                ));
            }
            if partition.contains(',') {
                return Err(src.error(
                    s.partition.span(),
                    format!("{at}.partition"),
                    format!(
                        "partition {partition:?} names several partitions; a cluster's jobs go \
                         to one (its nodes are that partition's): make a cluster for each"
                    ),
                ));
            }
            // Slurm resolves a relative path against the job's working directory (slurmrestd's
            // own, `/`, over REST), not the server's: the job could not open its output.
            let absolute = |key: &str,
                            v: &Option<Spanned<String>>|
             -> Result<Option<String>, FleetError> {
                let value = text(v, key)?;
                match (&value, v) {
                    (Some(path), Some(spanned)) if path.chars().any(char::is_control) => Err(src
                        .error(
                            spanned.span(),
                            format!("{at}.{key}"),
                            format!("path {path:?} contains a control character"),
                        )),
                    (Some(path), Some(spanned)) if !path.starts_with('/') => Err(src.error(
                        spanned.span(),
                        format!("{at}.{key}"),
                        format!(
                            "expected an absolute path, found {path:?}: Slurm would resolve it \
                             against the job's working directory, not the server's"
                        ),
                    )),
                    _ => Ok(value),
                }
            };
            Ok(ClusterBackend::Slurm(SlurmSettings {
                partition,
                rest_url,
                token_env,
                account: text(&s.account, "account")?,
                log_dir: absolute("log_dir", &s.log_dir)?,
                checkpoint_dir: absolute("checkpoint_dir", &s.checkpoint_dir)?,
                command: text(&s.command, "command")?,
            }))
        }
        (Some((other, span)), _) => Err(src.error(
            span,
            format!("{at}.backend"),
            format!("unknown backend {other:?}; expected \"agents\" or \"slurm\""),
        )),
    }
}

fn topology(
    src: &Source<'_>,
    raw: &RawCluster,
    at: &str,
    accel: &'static accelerator::Accelerator,
    nodes: u32,
    per_node: u32,
) -> Result<Topology, FleetError> {
    let at = format!("{at}.topology");
    let empty = RawTopology {
        scale_up: None,
        rack: None,
        block: None,
        cluster_gb_s: None,
        network_efficiency: None,
    };
    let t = raw.topology.as_ref().map_or(&empty, Spanned::get_ref);
    // A fabric inside the server (an HGX board) is one node's, whatever the server holds.
    let default_scale_up_nodes = if accel.fabric_spans_servers() {
        (accel.scale_up.domain / per_node).max(1)
    } else {
        1
    };

    let mut levels: Vec<Level> = Vec::with_capacity(4);
    let mut previous: Option<(Level, String)> = None;
    let specs = [
        (LevelKind::ScaleUp, &t.scale_up, accel.scale_up.gb_s),
        (LevelKind::Rack, &t.rack, accel.scale_out_gb_s),
        (LevelKind::Block, &t.block, accel.scale_out_gb_s),
    ];
    for (kind, raw_level, default_gb_s) in specs {
        let field = format!("{at}.{}", kind.as_str());
        let level = match raw_level {
            Some(l) => {
                let l = l.get_ref();
                let level_nodes =
                    src.positive_count(&l.nodes, &format!("{field}.nodes"), "node count")?;
                let gb_s = match &l.gb_s {
                    Some(g) => src.bandwidth(
                        g,
                        &format!("{field}.gb_s"),
                        "bandwidth (GB/s per accelerator)",
                    )?,
                    None => default_gb_s,
                };
                let level = Level {
                    kind,
                    nodes: level_nodes,
                    gb_s,
                };
                if let Some((prev, prev_field)) = &previous
                    && level_nodes % prev.nodes != 0
                {
                    return Err(src.error(
                            l.nodes.span(),
                            format!("{field}.nodes"),
                            format!(
                                "a {} of {level_nodes} nodes does not divide evenly into {} of {} nodes ({prev_field}); expected a multiple of {}",
                                kind.as_str(),
                                prev.kind.units(),
                                prev.nodes,
                                prev.nodes
                            ),
                        ));
                }
                if kind == LevelKind::ScaleUp {
                    let chips = u64::from(level_nodes) * u64::from(per_node);
                    if level_nodes > 1 && !accel.fabric_spans_servers() {
                        return Err(src.error(
                            l.nodes.span(),
                            format!("{field}.nodes"),
                            format!(
                                "{} ({}) connects the {} accelerators of one server and does not \
                                 reach beyond it: a scale-up domain is 1 node here, not {level_nodes}",
                                accel.name, accel.scale_up.fabric, accel.scale_up.domain
                            ),
                        ));
                    }
                    if chips > u64::from(accel.scale_up.domain.max(per_node)) {
                        return Err(src.error(
                            l.nodes.span(),
                            format!("{field}.nodes"),
                            format!(
                                "a scale-up domain of {level_nodes} nodes x {per_node} = {chips} accelerators exceeds what {} ({}) connects: at most {}",
                                accel.name, accel.scale_up.fabric, accel.scale_up.domain
                            ),
                        ));
                    }
                }
                Some((level, format!("{field}.nodes"), l.nodes.span()))
            }
            None if kind == LevelKind::ScaleUp => Some((
                Level {
                    kind,
                    nodes: default_scale_up_nodes,
                    gb_s: default_gb_s,
                },
                String::new(),
                0..0,
            )),
            None => None,
        };
        if let Some((level, field, _)) = level {
            levels.push(level);
            previous = Some((level, field));
        }
    }

    // The whole cluster must be made of whole units of its outermost declared level.
    if let Some((outer, outer_field)) = &previous
        && !nodes.is_multiple_of(outer.nodes)
    {
        return Err(src.error(
            raw.nodes.span(),
            format!("{}.nodes", at.trim_end_matches(".topology")),
            if outer_field.is_empty() {
                // The level is the default one: say where it comes from and how to change it.
                format!(
                    "{nodes} nodes do not fill whole scale-up domains: {} links up to {} \
                         accelerators, so a domain here is {} nodes of {per_node} ({} \
                         accelerators); use a multiple of {} nodes, or set \
                         topology.scale_up.nodes",
                    accel.name,
                    grouped(accel.scale_up.domain.into()),
                    grouped(outer.nodes.into()),
                    grouped(u64::from(outer.nodes) * u64::from(per_node)),
                    grouped(outer.nodes.into())
                )
            } else {
                format!(
                    "{nodes} nodes do not divide evenly into {} of {} nodes \
                         ({outer_field}); expected a multiple of {}",
                    outer.kind.units(),
                    outer.nodes,
                    outer.nodes
                )
            },
        ));
    }
    let cluster_gb_s = match &t.cluster_gb_s {
        Some(g) => src.bandwidth(
            g,
            &format!("{at}.cluster_gb_s"),
            "bandwidth (GB/s per accelerator)",
        )?,
        None => levels
            .last()
            .filter(|l| l.kind != LevelKind::ScaleUp)
            .map_or(accel.scale_out_gb_s, |l| l.gb_s),
    };
    levels.push(Level {
        kind: LevelKind::Cluster,
        nodes,
        gb_s: cluster_gb_s,
    });

    let network_efficiency = match &t.network_efficiency {
        Some(e) => {
            let x = *e.get_ref();
            if !(x.is_finite() && x > 0.0 && x <= 1.0) {
                return Err(src.error(
                    e.span(),
                    format!("{at}.network_efficiency"),
                    format!(
                        "expected a fraction of line rate in (0, 1], found {}",
                        shown(x)
                    ),
                ));
            }
            x
        }
        None => DEFAULT_NETWORK_EFFICIENCY,
    };
    Ok(Topology {
        levels,
        network_efficiency,
    })
}

/// One Slurm partition is one cluster: two clusters on the same partition of the same Slurm
/// would count its nodes twice and each take the other's jobs for strays (and cancel them).
fn check_slurm_partitions(
    src: &Source<'_>,
    raw: &RawFleet,
    clusters: &[Cluster],
) -> Result<(), FleetError> {
    let mut seen: BTreeMap<(String, &str), &str> = BTreeMap::new();
    for (i, c) in clusters.iter().enumerate() {
        let ClusterBackend::Slurm(settings) = &c.backend else {
            continue;
        };
        // The command-line tools reach the server host's Slurm; a URL names its slurmrestd.
        let slurm = settings.rest_url.as_deref().map_or_else(String::new, |u| {
            u.trim_end_matches('/').to_ascii_lowercase()
        });
        if let Some(first) = seen.insert((slurm, settings.partition.as_str()), c.name.as_str()) {
            let span = raw.clusters[i]
                .get_ref()
                .slurm
                .as_ref()
                .map_or(0..0, |s| s.get_ref().partition.span());
            return Err(src.error(
                span,
                format!("clusters[{i}].slurm.partition"),
                format!(
                    "cluster {:?} uses Slurm partition {:?}, as cluster {first:?} does on the same \
                     Slurm: one partition is one cluster (two would count its nodes twice and \
                     cancel each other's jobs as strays); give each cluster its own partition",
                    c.name, settings.partition
                ),
            ));
        }
    }
    Ok(())
}

/// Clusters bought as reserved capacity may not hold more accelerators than their contract reserves.
fn check_reserved_capacity(
    src: &Source<'_>,
    raw: &RawFleet,
    providers: &[Provider],
    clusters: &[Cluster],
) -> Result<(), FleetError> {
    let mut used: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for (i, c) in clusters.iter().enumerate() {
        if c.capacity != Capacity::Reserved {
            continue;
        }
        let total = used
            .entry((c.provider.as_str(), c.accelerator.name))
            .or_default();
        *total += c.accelerators();
        let reserved = providers
            .iter()
            .find(|p| p.name == c.provider)
            .and_then(|p| {
                p.contracts
                    .iter()
                    .find(|k| k.accelerator == c.accelerator.name)
            })
            .and_then(|k| k.reserved.as_ref())
            .map_or(0, |r| r.accelerators);
        if *total > reserved {
            return Err(src.error(
                raw.clusters[i].get_ref().nodes.span(),
                format!("clusters[{i}].nodes"),
                format!(
                    "reserved clusters of provider {:?} hold {} {} accelerators, more than the {} its contract reserves",
                    c.provider,
                    grouped(*total),
                    c.accelerator.name,
                    grouped(reserved)
                ),
            ));
        }
    }
    Ok(())
}

fn organisation(
    src: &Source<'_>,
    raw: &RawOrganisation,
    i: usize,
    clusters: &HashSet<&str>,
    cluster_sizes: &HashMap<&str, u64>,
    org_names: &mut Names<'_>,
    team_names: &mut Names<'_>,
) -> Result<Organisation, FleetError> {
    let at = format!("tenants[{i}]");
    let name = src.name(&raw.name, &format!("{at}.name"))?;
    org_names.insert(src, &name, &raw.name, &format!("{at}.name"))?;
    // A tenant names a team; an organisation's name is refused as one. The two must differ,
    // or a token for the name would be both.
    team_names.clashes_with(src, &name, &raw.name, &format!("{at}.name"), "organisation")?;
    let weight = weight_or_default(src, raw.weight.as_ref(), &format!("{at}.weight"))?;
    let org_quotas = quotas(src, &raw.quotas, &format!("{at}.quotas"), clusters)?;
    // An organisation's quota caps its teams together; the scheduler reclaims only teams'
    // guarantees. Without a borrowing limit it would cap nothing and guarantee nothing.
    if let Some((k, q)) = raw
        .quotas
        .iter()
        .enumerate()
        .find(|(_, q)| q.get_ref().borrowing_limit.is_none())
    {
        return Err(src.error(
            q.get_ref().accelerators.span(),
            format!("{at}.quotas[{k}].borrowing_limit"),
            "an organisation's quota caps its teams together at accelerators + borrowing_limit: \
             give a borrowing_limit (0 for a cap of exactly `accelerators`); guarantees that \
             are reclaimed from others go on its teams' quotas",
        ));
    }
    if raw.teams.is_empty() {
        return Err(src.error(
            raw.name.span(),
            format!("{at}.teams"),
            "an organisation needs at least one team",
        ));
    }
    let mut teams = Vec::with_capacity(raw.teams.len());
    for (j, t) in raw.teams.iter().enumerate() {
        let t = t.get_ref();
        let at = format!("{at}.teams[{j}]");
        let team_name = src.name(&t.name, &format!("{at}.name"))?;
        team_names.insert(src, &team_name, &t.name, &format!("{at}.name"))?;
        org_names.clashes_with(src, &team_name, &t.name, &format!("{at}.name"), "team")?;
        // The range a job submitted with its own priority may have: a team's default outside
        // it would give its jobs a priority no submission could ask for.
        let max = crate::job::MAX_PRIORITY;
        let priority = match &t.priority {
            Some(p) => i32::try_from(*p.get_ref())
                .ok()
                .filter(|p| (-max..=max).contains(p))
                .ok_or_else(|| {
                    src.error(
                        p.span(),
                        format!("{at}.priority"),
                        format!(
                            "priority {} is out of range: from -{max} to {max}",
                            p.get_ref()
                        ),
                    )
                })?,
            None => 0,
        };
        let team_quotas = quotas(src, &t.quotas, &format!("{at}.quotas"), clusters)?;
        // A guarantee above what the organisation lets its teams hold together there could
        // never be honoured: the team's jobs would wait at the organisation's cap.
        for (k, q) in team_quotas.iter().enumerate() {
            let (cap, where_, there) = match &q.cluster {
                Some(c) => (Quota::cap(&org_quotas, c), format!("on {c}"), "there"),
                None => (
                    org_quotas
                        .iter()
                        .filter(|o| o.cluster.is_none())
                        .filter_map(|o| o.borrowing_limit.map(|b| o.accelerators.saturating_add(b)))
                        .min()
                        .unwrap_or(u64::MAX),
                    "fleet-wide".to_owned(),
                    "in all",
                ),
            };
            // Nor can one above what its cluster holds.
            if let Some(size) = q.cluster.as_deref().and_then(|c| cluster_sizes.get(c))
                && q.accelerators > *size
            {
                return Err(src.error(
                    t.quotas[k].get_ref().accelerators.span(),
                    format!("{at}.quotas[{k}].accelerators"),
                    format!(
                        "team {team_name} is guaranteed {} accelerators {where_}, which holds \
                         {size}: the guarantee could never be honoured; lower it",
                        q.accelerators
                    ),
                ));
            }
            if q.accelerators > cap {
                return Err(src.error(
                    t.quotas[k].get_ref().accelerators.span(),
                    format!("{at}.quotas[{k}].accelerators"),
                    format!(
                        "team {team_name} is guaranteed {} accelerators {where_}, more than its \
                         organisation {name} lets its teams hold {there} together ({cap}, \
                         accelerators + borrowing_limit of its quota): the guarantee could \
                         never be honoured; lower it or raise the organisation's cap",
                        q.accelerators
                    ),
                ));
            }
        }
        teams.push(Team {
            name: team_name,
            weight: weight_or_default(src, t.weight.as_ref(), &format!("{at}.weight"))?,
            priority,
            quotas: team_quotas,
        });
    }
    Ok(Organisation {
        name,
        weight,
        quotas: org_quotas,
        teams,
    })
}

fn weight_or_default(
    src: &Source<'_>,
    w: Option<&Spanned<f64>>,
    field: &str,
) -> Result<f64, FleetError> {
    w.map_or(Ok(1.0), |w| src.positive_f64(w, field, "weight"))
}

fn quotas(
    src: &Source<'_>,
    raw: &[Spanned<RawQuota>],
    at: &str,
    clusters: &HashSet<&str>,
) -> Result<Vec<Quota>, FleetError> {
    let mut seen: BTreeMap<Option<String>, ()> = BTreeMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (k, q) in raw.iter().enumerate() {
        let q = q.get_ref();
        let at = format!("{at}[{k}]");
        let cluster = match &q.cluster {
            Some(c) => {
                let name = c.get_ref().trim();
                if !clusters.contains(name) {
                    let mut known: Vec<&str> = clusters.iter().copied().collect();
                    known.sort_unstable();
                    return Err(src.error(
                        c.span(),
                        format!("{at}.cluster"),
                        format!(
                            "quota on unknown cluster {name:?}; the fleet defines: {}",
                            list_or_none(&known)
                        ),
                    ));
                }
                Some(name.to_owned())
            }
            None => None,
        };
        if seen.insert(cluster.clone(), ()).is_some() {
            let span = q
                .cluster
                .as_ref()
                .map_or(q.accelerators.span(), Spanned::span);
            return Err(src.error(
                span,
                format!("{at}.cluster"),
                format!(
                    "a second quota for {}",
                    cluster
                        .as_deref()
                        .map_or("the whole fleet".to_owned(), |c| format!("cluster {c:?}"))
                ),
            ));
        }
        // 0 guaranteed is a cap alone ("may borrow up to N"), so it needs a borrowing limit.
        let accelerators = if *q.accelerators.get_ref() == 0 && q.borrowing_limit.is_some() {
            0
        } else if *q.accelerators.get_ref() == 0 {
            return Err(src.error(
                q.accelerators.span(),
                format!("{at}.accelerators"),
                "a quota of 0 accelerators guarantees nothing: give a borrowing_limit to cap the \
                 team (0 guaranteed, up to the limit borrowed), or leave the quota out"
                    .to_owned(),
            ));
        } else {
            src.positive_u64(
                &q.accelerators,
                &format!("{at}.accelerators"),
                "accelerator count",
            )?
        };
        let borrowing_limit = match &q.borrowing_limit {
            Some(b) => {
                let n = *b.get_ref();
                Some(u64::try_from(n).map_err(|_| {
                    src.error(
                        b.span(),
                        format!("{at}.borrowing_limit"),
                        format!("expected zero or more accelerators, found {n}"),
                    )
                })?)
            }
            None => None,
        };
        if accelerators == 0 && borrowing_limit == Some(0) && cluster.is_none() {
            // (On one cluster, 0 and 0 keeps the team off it: that is a rule worth having.)
            let span = q
                .borrowing_limit
                .as_ref()
                .map_or(q.accelerators.span(), Spanned::span);
            return Err(src.error(
                span,
                format!("{at}.borrowing_limit"),
                "a fleet-wide quota of 0 with a borrowing limit of 0 lets the team hold no \
                 accelerator anywhere, so none of its jobs could ever run: raise the limit, \
                 or leave the team out"
                    .to_owned(),
            ));
        }
        out.push(Quota {
            cluster,
            accelerators,
            borrowing_limit,
        });
    }
    if !clusters.is_empty()
        && clusters.iter().all(|c| {
            out.iter().any(|q| {
                q.cluster.as_deref() == Some(*c)
                    && q.accelerators == 0
                    && q.borrowing_limit == Some(0)
            })
        })
    {
        return Err(src.error(
            raw.first().map_or(0..0, |q| q.span()),
            at.to_owned(),
            "every cluster's quota is 0 with a borrowing limit of 0: the team may hold no \
             accelerator anywhere, so none of its jobs could ever run"
                .to_owned(),
        ));
    }
    Ok(out)
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "(none)".to_owned()
    } else {
        names.join(", ")
    }
}

/// A number as an error message shows it: as written for everyday sizes, in exponent form for
/// huge or tiny ones (`1e308`, not 309 digits).
fn shown(x: f64) -> String {
    if x != 0.0 && x.is_finite() && !(1e-6..1e12).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}
