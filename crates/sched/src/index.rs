//! Free-capacity index of one cluster, at node granularity, with its topology units.
//!
//! Nodes are numbered so that unit `u` of a level holding `n` nodes covers nodes
//! `u*n .. min((u+1)*n, nodes)`. Each level keeps the number of idle (fully free, healthy) nodes
//! per unit and an ordered set of `(idle, unit)` pairs, so finding the best-fitting unit for a
//! gang is a logarithmic lookup rather than a scan; sub-node requests use an ordered set of
//! `(available, node)` pairs. No per-accelerator objects exist.

use std::collections::{BTreeMap, BTreeSet};

use switchyard_core::fleet::{Cluster, LevelKind};

/// A share of one node given to one allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeShare {
    pub node: u32,
    pub accelerators: u32,
}

/// How spread out a placement is: units touched at each level (innermost first).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Spread {
    pub nodes: u32,
    /// `(level, units touched)` for each level above the node, innermost first.
    pub units: Vec<(LevelKind, u32)>,
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} node{}",
            self.nodes,
            if self.nodes == 1 { "" } else { "s" }
        )?;
        for (kind, n) in &self.units {
            if *kind == LevelKind::Cluster {
                continue;
            }
            let unit = match kind {
                LevelKind::ScaleUp => "scale-up domain",
                other => other.as_str(),
            };
            write!(f, ", {n} {unit}{}", if *n == 1 { "" } else { "s" })?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct LevelIndex {
    kind: LevelKind,
    unit_nodes: u32,
    idle: Vec<u32>,
    by_idle: BTreeSet<(u32, u32)>,
}

/// The largest topology unit [`ClusterIndex::place_near`] looks through node by node for a
/// partly used node near a failed one (a replacement is rare; a look through this many nodes is
/// cheap beside the restart it serves).
pub const NEAR_SCAN_NODES: u32 = 4096;

/// Free capacity of one cluster.
#[derive(Debug, Clone)]
pub struct ClusterIndex {
    per_node: u32,
    nodes: u32,
    used: Vec<u32>,
    /// Not offered to new work: failed, or drained.
    down: Vec<bool>,
    /// Down because drained: the work already on it goes on (a subset of `down`).
    drained: Vec<bool>,
    levels: Vec<LevelIndex>,
    by_avail: BTreeSet<(u32, u32)>,
    free: u64,
    /// Accelerators allocated on every node, down or not.
    allocated: u64,
    idle_nodes: u32,
    down_nodes: u32,
    drained_nodes: u32,
}

impl ClusterIndex {
    pub fn new(cluster: &Cluster) -> Self {
        let nodes = cluster.nodes.max(1);
        let per_node = cluster.accelerators_per_node.max(1);
        let mut sizes: Vec<(LevelKind, u32)> = cluster
            .topology
            .levels
            .iter()
            .map(|l| (l.kind, l.nodes.clamp(1, nodes)))
            .collect();
        if sizes.last().is_none_or(|l| l.1 < nodes) {
            sizes.push((LevelKind::Cluster, nodes));
        }
        let mut levels: Vec<LevelIndex> = Vec::with_capacity(sizes.len());
        for (kind, unit_nodes) in sizes {
            if levels.last().is_some_and(|l| l.unit_nodes >= unit_nodes) {
                continue;
            }
            let units = nodes.div_ceil(unit_nodes);
            let idle: Vec<u32> = (0..units)
                .map(|u| (u + 1).saturating_mul(unit_nodes).min(nodes) - u * unit_nodes)
                .collect();
            let by_idle = idle
                .iter()
                .enumerate()
                .map(|(u, &i)| (i, u as u32))
                .collect();
            levels.push(LevelIndex {
                kind,
                unit_nodes,
                idle,
                by_idle,
            });
        }
        Self {
            per_node,
            nodes,
            used: vec![0; nodes as usize],
            down: vec![false; nodes as usize],
            drained: vec![false; nodes as usize],
            levels,
            by_avail: BTreeSet::new(),
            free: u64::from(nodes) * u64::from(per_node),
            allocated: 0,
            idle_nodes: nodes,
            down_nodes: 0,
            drained_nodes: 0,
        }
    }

    pub fn nodes(&self) -> u32 {
        self.nodes
    }

    pub fn per_node(&self) -> u32 {
        self.per_node
    }

    /// Accelerators on healthy nodes, free or not.
    pub fn healthy_accelerators(&self) -> u64 {
        u64::from(self.nodes - self.down_nodes) * u64::from(self.per_node)
    }

    pub fn capacity(&self) -> u64 {
        u64::from(self.nodes) * u64::from(self.per_node)
    }

    /// Free accelerators on healthy nodes.
    pub fn free(&self) -> u64 {
        self.free
    }

    pub fn idle_nodes(&self) -> u32 {
        self.idle_nodes
    }

    pub fn down_nodes(&self) -> u32 {
        self.down_nodes
    }

    pub fn drained_nodes(&self) -> u32 {
        self.drained_nodes
    }

    /// Whether the node is offered nothing new: failed or drained.
    pub fn is_down(&self, node: u32) -> bool {
        self.down[node as usize]
    }

    /// Whether the node is down because it was drained (its work goes on).
    pub fn is_drained(&self, node: u32) -> bool {
        self.drained[node as usize]
    }

    /// Accelerators allocated right now, on healthy and drained nodes alike.
    pub fn allocated(&self) -> u64 {
        self.allocated
    }

    pub fn used_on(&self, node: u32) -> u32 {
        self.used[node as usize]
    }

    /// What `node` would offer once `back` of its accelerators are given back (nothing while
    /// it is failed or drained).
    pub fn room_after(&self, node: u32, back: u32) -> u32 {
        if self.down[node as usize] {
            0
        } else {
            let used = self.used[node as usize];
            self.per_node - used + back.min(used)
        }
    }

    fn avail(&self, node: u32) -> u32 {
        if self.down[node as usize] {
            0
        } else {
            self.per_node - self.used[node as usize]
        }
    }

    fn partial(&self, avail: u32) -> bool {
        avail > 0 && avail < self.per_node
    }

    /// Re-indexes `node` after its availability changed from `before`; a change of its idle
    /// status is recorded in `changes` for [`Self::apply_idle_changes`].
    fn reindex(&mut self, node: u32, before: u32, changes: &mut Vec<(u32, bool)>) {
        let after = self.avail(node);
        if before == after {
            return;
        }
        if self.partial(before) {
            self.by_avail.remove(&(before, node));
        }
        if self.partial(after) {
            self.by_avail.insert((after, node));
        }
        self.free = self.free + u64::from(after) - u64::from(before);
        let was_idle = before == self.per_node;
        let is_idle = after == self.per_node;
        if was_idle != is_idle {
            if is_idle {
                self.idle_nodes += 1;
            } else {
                self.idle_nodes -= 1;
            }
            changes.push((node, is_idle));
        }
    }

    /// Applies idle-status changes to every level, once per run of nodes in the same unit
    /// (a gang of thousands of nodes touches each rack's entry once, not once per node).
    fn apply_idle_changes(&mut self, changes: &[(u32, bool)]) {
        for level in &mut self.levels {
            let mut i = 0;
            while i < changes.len() {
                let u = changes[i].0 / level.unit_nodes;
                let (lo, hi) = (
                    u * level.unit_nodes,
                    (u + 1).saturating_mul(level.unit_nodes),
                );
                let mut delta: i64 = 0;
                while i < changes.len() && changes[i].0 >= lo && changes[i].0 < hi {
                    delta += if changes[i].1 { 1 } else { -1 };
                    i += 1;
                }
                if delta == 0 {
                    continue;
                }
                let old = level.idle[u as usize];
                let new = (i64::from(old) + delta) as u32;
                level.idle[u as usize] = new;
                if old > 0 {
                    level.by_idle.remove(&(old, u));
                }
                if new > 0 {
                    level.by_idle.insert((new, u));
                }
            }
        }
    }

    /// Whether `accelerators` could be placed right now (same rule as [`Self::place`]).
    pub fn fits(&self, accelerators: u32) -> bool {
        if accelerators == 0 {
            return false;
        }
        if accelerators < self.per_node {
            self.idle_nodes > 0 || self.by_avail.range((accelerators, 0)..).next().is_some()
        } else {
            self.idle_nodes >= accelerators.div_ceil(self.per_node)
        }
    }

    /// Whether gangs of all of `sizes` would fit at once, placed as [`Self::place`] places
    /// them (the largest first): whole idle nodes for those of a node or more, the partly used
    /// node with least room that fits (else an idle node) for smaller ones. A sum of free
    /// accelerators is not enough: scattered over busy nodes they hold no second gang.
    pub fn fits_all(&self, sizes: &[u32]) -> bool {
        let mut sizes: Vec<u32> = sizes.iter().copied().filter(|&s| s > 0).collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        let mut idle = self.idle_nodes;
        // Room on partly used nodes: the most roomy ones, one per gang, are enough to tell
        // (any gangs that fit in some nodes fit in as many of the roomiest).
        let mut partial: Vec<u32> = self
            .by_avail
            .iter()
            .rev()
            .map(|&(avail, _)| avail)
            .take(sizes.len())
            .collect();
        for size in sizes {
            if size >= self.per_node {
                let k = size.div_ceil(self.per_node);
                if idle < k {
                    return false;
                }
                idle -= k;
                continue;
            }
            // Best fit: the least room that holds it.
            match partial
                .iter_mut()
                .filter(|a| **a >= size)
                .min_by_key(|a| **a)
            {
                Some(a) => *a -= size,
                None if idle > 0 => {
                    idle -= 1;
                    partial.push(self.per_node - size);
                }
                None => return false,
            }
        }
        true
    }

    /// Whether `accelerators` would fit (as [`Self::fits`]) once `released` (accelerators per
    /// node) were given back: a gang of whole nodes needs nodes that become entirely idle, not
    /// free accelerators scattered over busy ones.
    pub fn fits_after_release(
        &self,
        accelerators: u32,
        released: &std::collections::BTreeMap<u32, u32>,
    ) -> bool {
        if self.fits(accelerators) {
            return true;
        }
        let usable = released.iter().filter(|&(&node, _)| !self.is_down(node));
        if accelerators < self.per_node {
            usable
                .map(|(&node, &back)| self.avail(node) + back.min(self.used_on(node)))
                .any(|avail| avail >= accelerators)
        } else {
            let freed = usable
                .filter(|&(&node, &back)| back >= self.used_on(node))
                .count() as u32;
            self.idle_nodes + freed >= accelerators.div_ceil(self.per_node)
        }
    }

    /// The largest gang size in `min..=max` that fits once `released` is given back (a run
    /// growing in place counts its own accelerators), if any. What fits is closed downwards
    /// (a size fits if a larger one does), so a binary search finds it.
    pub fn largest_fit_after_release(
        &self,
        min: u32,
        max: u32,
        released: &std::collections::BTreeMap<u32, u32>,
    ) -> Option<u32> {
        if min > max || !self.fits_after_release(min, released) {
            return None;
        }
        let (mut fits, mut too_big) = (min, max.saturating_add(1));
        if self.fits_after_release(max, released) {
            return Some(max);
        }
        while too_big - fits > 1 {
            let mid = fits + (too_big - fits) / 2;
            if self.fits_after_release(mid, released) {
                fits = mid;
            } else {
                too_big = mid;
            }
        }
        Some(fits)
    }

    /// The largest gang size in `min..=max` that a run holding `own` (one share per node, as
    /// [`Self::place`] and [`Self::place_near`] give them) could grow to in place, counting
    /// its own accelerators as given back ([`Self::largest_fit_after_release`]). Gangs of
    /// whole nodes are counted from the shares directly: a run of 100,000 GPUs holds 12,500,
    /// and a map of them for every look was most of a scheduling pass.
    pub fn largest_growth(&self, min: u32, max: u32, own: &[NodeShare]) -> Option<u32> {
        if min > max {
            return None;
        }
        if min < self.per_node {
            let mut released = std::collections::BTreeMap::new();
            for share in own {
                *released.entry(share.node).or_insert(0) += share.accelerators;
            }
            return self.largest_fit_after_release(min, max, &released);
        }
        // Whole nodes: those idle now and those the run alone uses (a gang that fits now
        // finds at least as many idle nodes).
        let freed = own
            .iter()
            .filter(|s| !self.is_down(s.node) && s.accelerators >= self.used_on(s.node))
            .count() as u64;
        let most = (u64::from(self.idle_nodes) + freed)
            .saturating_mul(u64::from(self.per_node))
            .min(u64::from(max));
        (most >= u64::from(min)).then_some(most as u32)
    }

    /// The largest gang size in `min..=max` that fits now, if any.
    pub fn largest_fit(&self, min: u32, max: u32) -> Option<u32> {
        if self.fits(max) {
            return Some(max);
        }
        let whole = self.idle_nodes.saturating_mul(self.per_node);
        let mut best = if whole >= min {
            Some(whole.min(max))
        } else {
            None
        };
        if best.is_none() {
            // Sub-node sizes: the most available on one partly used node.
            if let Some(&(avail, _)) = self.by_avail.iter().next_back()
                && avail >= min
            {
                best = Some(avail.min(max));
            }
        }
        best
    }

    /// Places a gang of `accelerators` in as few topology units as possible, or returns `None`
    /// without changing anything. Sub-node requests go to the healthy node with the least room
    /// that still fits (best fit); larger ones take whole idle nodes from the smallest unit that
    /// has enough of them, filling from the children with the most idle nodes first.
    pub fn place(&mut self, accelerators: u32) -> Option<Vec<NodeShare>> {
        if !self.fits(accelerators) {
            return None;
        }
        let mut changes = Vec::new();
        if accelerators < self.per_node {
            // Best fit: the partly used node with least room that fits, else an idle node in
            // the innermost unit with fewest idle nodes.
            let node = match self.by_avail.range((accelerators, 0)..).next() {
                Some(&(_, node)) => node,
                None => {
                    let &(_, unit) = self.levels[0].by_idle.iter().next()?;
                    let (start, end) = self.unit_range(0, unit);
                    (start..end).find(|&n| self.avail(n) == self.per_node)?
                }
            };
            let before = self.avail(node);
            self.used[node as usize] += accelerators;
            self.allocated += u64::from(accelerators);
            self.reindex(node, before, &mut changes);
            self.apply_idle_changes(&changes);
            return Some(vec![NodeShare { node, accelerators }]);
        }
        let k = accelerators.div_ceil(self.per_node);
        let (level, unit) = self.best_unit(k)?;
        let mut picked = Vec::with_capacity(k as usize);
        self.collect(level, unit, k, &mut picked);
        debug_assert_eq!(picked.len(), k as usize);
        let mut shares = Vec::with_capacity(picked.len());
        let mut left = accelerators;
        for node in picked {
            let take = left.min(self.per_node);
            left -= take;
            let before = self.avail(node);
            self.used[node as usize] += take;
            self.allocated += u64::from(take);
            self.reindex(node, before, &mut changes);
            shares.push(NodeShare {
                node,
                accelerators: take,
            });
        }
        self.apply_idle_changes(&changes);
        Some(shares)
    }

    /// Takes exactly `shares` (work an earlier scheduler placed, whose processes may run on
    /// there), or returns false without changing anything when one of their nodes has failed,
    /// is out of range, or lacks the room. A drained node counts with its room: what runs on it
    /// goes on (it is offered to nothing new).
    pub fn place_exact(&mut self, shares: &[NodeShare]) -> bool {
        let mut wanted: BTreeMap<u32, u32> = BTreeMap::new();
        for s in shares {
            if s.node >= self.nodes || s.accelerators == 0 {
                return false;
            }
            *wanted.entry(s.node).or_default() += s.accelerators;
        }
        let room = |node: u32| {
            if self.drained[node as usize] {
                self.per_node - self.used[node as usize]
            } else {
                self.avail(node)
            }
        };
        if wanted.is_empty() || wanted.iter().any(|(&node, &n)| room(node) < n) {
            return false;
        }
        let mut changes = Vec::new();
        for (node, n) in wanted {
            let before = self.avail(node);
            self.used[node as usize] += n;
            self.allocated += u64::from(n);
            self.reindex(node, before, &mut changes);
        }
        self.apply_idle_changes(&changes);
        true
    }

    /// Places `accelerators` (at most one node's worth) on one node as close to `near` as the
    /// topology allows: in the innermost unit around `near` (rack, then block, …) that has
    /// room, a partly used node that fits (best fit) for a sub-node share, else an idle node.
    /// Units larger than [`NEAR_SCAN_NODES`] but smaller than the cluster are not searched for
    /// partly used nodes; the whole cluster's best fit is looked up in its index.
    pub fn place_near(&mut self, accelerators: u32, near: u32) -> Option<NodeShare> {
        if accelerators == 0 || accelerators > self.per_node || near >= self.nodes {
            return None;
        }
        let sub_node = accelerators < self.per_node;
        let mut chosen = None;
        for level in 0..self.levels.len() {
            let l = &self.levels[level];
            let unit = near / l.unit_nodes;
            if sub_node {
                let best_fit = if l.unit_nodes >= self.nodes {
                    // The whole cluster: its best-fitting partly used node, from the index.
                    self.by_avail
                        .range((accelerators, 0)..)
                        .next()
                        .map(|&(_, n)| n)
                } else if l.unit_nodes <= NEAR_SCAN_NODES {
                    let (start, end) = self.unit_range(level, unit);
                    (start..end)
                        .filter(|&n| self.used[n as usize] > 0 && self.avail(n) >= accelerators)
                        .min_by_key(|&n| (self.avail(n), n))
                } else {
                    None
                };
                if best_fit.is_some() {
                    chosen = best_fit;
                    break;
                }
            }
            if l.idle[unit as usize] > 0 {
                let mut picked = Vec::with_capacity(1);
                self.collect(level, unit, 1, &mut picked);
                chosen = picked.first().copied();
                break;
            }
        }
        let node = match chosen {
            Some(n) => n,
            None if sub_node => self
                .by_avail
                .range((accelerators, 0)..)
                .next()
                .map(|&(_, n)| n)?,
            None => return None,
        };
        let before = self.avail(node);
        self.used[node as usize] += accelerators;
        self.allocated += u64::from(accelerators);
        let mut changes = Vec::new();
        self.reindex(node, before, &mut changes);
        self.apply_idle_changes(&changes);
        Some(NodeShare { node, accelerators })
    }

    fn best_unit(&self, k: u32) -> Option<(usize, u32)> {
        for (i, level) in self.levels.iter().enumerate() {
            if level.unit_nodes < k {
                continue;
            }
            if let Some(&(_, unit)) = level.by_idle.range((k, 0)..).next() {
                return Some((i, unit));
            }
        }
        None
    }

    fn unit_range(&self, level: usize, unit: u32) -> (u32, u32) {
        let n = self.levels[level].unit_nodes;
        (unit * n, ((unit + 1).saturating_mul(n)).min(self.nodes))
    }

    fn collect(&self, level: usize, unit: u32, mut k: u32, out: &mut Vec<u32>) {
        let (start, end) = self.unit_range(level, unit);
        if level == 0 {
            for node in start..end {
                if k == 0 {
                    break;
                }
                if self.avail(node) == self.per_node {
                    out.push(node);
                    k -= 1;
                }
            }
            return;
        }
        let child = &self.levels[level - 1];
        let first = start / child.unit_nodes;
        let last = end.div_ceil(child.unit_nodes);
        let mut children: Vec<(u32, u32)> = (first..last)
            .map(|c| (child.idle[c as usize], c))
            .filter(|&(idle, _)| idle > 0)
            .collect();
        // A child that holds the rest exactly (or with least room to spare) first, then the
        // fullest children: as few children as possible, little fragmentation.
        if let Some(&(_, c)) = children
            .iter()
            .filter(|&&(idle, _)| idle >= k)
            .min_by_key(|&&(idle, c)| (idle, c))
        {
            self.collect(level - 1, c, k, out);
            return;
        }
        children.sort_by_key(|&(idle, c)| (std::cmp::Reverse(idle), c));
        for (idle, c) in children {
            if k == 0 {
                break;
            }
            let take = idle.min(k);
            self.collect(level - 1, c, take, out);
            k -= take;
        }
    }

    /// Gives back what [`Self::place`] handed out.
    pub fn release(&mut self, shares: &[NodeShare]) {
        let mut changes = Vec::new();
        for s in shares {
            let before = self.avail(s.node);
            self.used[s.node as usize] -= s.accelerators;
            self.allocated -= u64::from(s.accelerators);
            self.reindex(s.node, before, &mut changes);
        }
        self.apply_idle_changes(&changes);
    }

    /// Takes a node out of service (its allocations must have been released or are released
    /// afterwards; a down node is never offered), or puts it back. Either way it is no longer
    /// drained: a drained node that fails is failed, one that is repaired is up.
    pub fn set_down(&mut self, node: u32, down: bool) {
        if std::mem::take(&mut self.drained[node as usize]) {
            self.drained_nodes -= 1;
        }
        if self.down[node as usize] == down {
            return;
        }
        let before = self.avail(node);
        self.down[node as usize] = down;
        if down {
            self.down_nodes += 1;
        } else {
            self.down_nodes -= 1;
        }
        let mut changes = Vec::new();
        self.reindex(node, before, &mut changes);
        self.apply_idle_changes(&changes);
    }

    /// Drains a healthy node: nothing new is placed on it, and what it holds stays until
    /// released. Returns false (and changes nothing) for a node already down.
    pub fn set_drained(&mut self, node: u32) -> bool {
        if self.down[node as usize] {
            return false;
        }
        self.set_down(node, true);
        self.drained[node as usize] = true;
        self.drained_nodes += 1;
        true
    }

    /// How spread out a set of shares is.
    pub fn spread(&self, shares: &[NodeShare]) -> Spread {
        let mut units = Vec::with_capacity(self.levels.len());
        for level in self.levels.iter().filter(|l| l.unit_nodes > 1) {
            let mut seen: Vec<u32> = shares.iter().map(|s| s.node / level.unit_nodes).collect();
            seen.sort_unstable();
            seen.dedup();
            units.push((level.kind, seen.len() as u32));
        }
        Spread {
            nodes: shares.len() as u32,
            units,
        }
    }

    /// Recomputes every counter from `used`/`down` and compares with the incremental ones.
    pub fn check(&self) -> Result<(), String> {
        let mut free = 0u64;
        let mut idle = 0u32;
        let allocated: u64 = self.used.iter().map(|&u| u64::from(u)).sum();
        let drained = self.drained.iter().filter(|&&d| d).count() as u32;
        if drained != self.drained_nodes {
            return Err(format!(
                "drained nodes drifted: {drained} vs {}",
                self.drained_nodes
            ));
        }
        if allocated != self.allocated {
            return Err(format!(
                "allocated drifted: {allocated} vs {}",
                self.allocated
            ));
        }
        for n in 0..self.nodes {
            if self.drained[n as usize] && !self.down[n as usize] {
                return Err(format!("node {n} is drained but offered"));
            }
            if self.used[n as usize] > self.per_node {
                return Err(format!(
                    "node {n} has {} used of {}",
                    self.used[n as usize], self.per_node
                ));
            }
            let a = self.avail(n);
            free += u64::from(a);
            if a == self.per_node {
                idle += 1;
            }
            if self.partial(a) != self.by_avail.contains(&(a, n)) {
                return Err(format!("node {n} missing from the availability index"));
            }
        }
        if free != self.free || idle != self.idle_nodes {
            return Err(format!(
                "counters drifted: free {free} vs {}, idle {idle} vs {}",
                self.free, self.idle_nodes
            ));
        }
        if self.by_avail.len() as u64 > u64::from(self.nodes) {
            return Err("availability index has stale entries".into());
        }
        for level in &self.levels {
            for (u, &count) in level.idle.iter().enumerate() {
                let (s, e) = self.unit_range(
                    self.levels
                        .iter()
                        .position(|l| l.unit_nodes == level.unit_nodes)
                        .unwrap_or(0),
                    u as u32,
                );
                let real = (s..e).filter(|&n| self.avail(n) == self.per_node).count() as u32;
                if real != count {
                    return Err(format!(
                        "{} {u}: idle {count}, really {real}",
                        level.kind.as_str()
                    ));
                }
            }
            if level.by_idle.len() != level.idle.iter().filter(|&&i| i > 0).count() {
                return Err(format!("{} index has stale entries", level.kind.as_str()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spread_reads_in_words_with_plurals() {
        let spread = |nodes, units: &[(LevelKind, u32)]| {
            Spread {
                nodes,
                units: units.to_vec(),
            }
            .to_string()
        };
        assert_eq!(
            spread(
                1024,
                &[
                    (LevelKind::Rack, 128),
                    (LevelKind::Block, 16),
                    (LevelKind::Cluster, 1)
                ]
            ),
            "1024 nodes, 128 racks, 16 blocks"
        );
        assert_eq!(
            spread(1, &[(LevelKind::ScaleUp, 1), (LevelKind::Rack, 1)]),
            "1 node, 1 scale-up domain, 1 rack"
        );
    }

    #[test]
    fn an_exact_placement_takes_just_those_shares_or_nothing() {
        let mut i = racked();
        let share = |node, accelerators| NodeShare { node, accelerators };
        // Node 5 whole and half of node 2.
        assert!(i.place_exact(&[share(5, 8), share(2, 4)]));
        assert_eq!((i.used_on(5), i.used_on(2), i.free()), (8, 4, 64 - 12));
        i.check().expect("consistent");
        // Not there: node 2 has 4 left, node 8 does not exist, a share of 0, a down node.
        let free = i.free();
        assert!(!i.place_exact(&[share(3, 8), share(2, 5)]));
        assert!(!i.place_exact(&[share(8, 1)]));
        assert!(!i.place_exact(&[share(3, 0)]));
        assert!(!i.place_exact(&[]));
        assert!(
            !i.place_exact(&[share(2, 3), share(2, 2)]),
            "two shares of one node add up"
        );
        i.set_down(7, true);
        assert!(!i.place_exact(&[share(7, 1)]));
        assert_eq!((i.free(), i.used_on(3)), (free - 8, 0), "nothing taken");
        // A drained node holds what ran there (and offers nothing new).
        assert!(i.set_drained(6));
        let free = i.free();
        assert!(i.place_exact(&[share(6, 8)]));
        assert!(!i.place_exact(&[share(6, 1)]), "full");
        assert_eq!((i.free(), i.used_on(6)), (free, 8));
        i.check().expect("consistent");
        i.release(&[share(6, 8)]);
        assert!(i.place_exact(&[share(2, 2), share(2, 2)]));
        assert_eq!(i.used_on(2), 8);
        i.check().expect("consistent");
        i.release(&[share(5, 8), share(2, 8)]);
        assert_eq!(
            i.free(),
            64 - 16,
            "nodes 6 (drained) and 7 (down) offer nothing"
        );
        i.check().expect("consistent");
    }

    /// 8 nodes of 8 accelerators in racks of 4.
    fn racked() -> ClusterIndex {
        let fleet = switchyard_core::Fleet::from_toml(
            r#"
name = "t"
[[providers]]
name = "p"
kind = "cloud"
[[providers.contracts]]
accelerator = "H100-SXM"
on_demand_price = 1.0
[[clusters]]
name = "c"
provider = "p"
region = "r"
accelerator = "H100-SXM"
nodes = 8
accelerators_per_node = 8
capacity = "on_demand"
node_mtbf_hours = 1000.0
repair_hours = 1.0
[clusters.topology]
scale_up = { nodes = 1, gb_s = 450.0 }
rack = { nodes = 4, gb_s = 50.0 }
cluster_gb_s = 50.0
[[tenants]]
name = "o"
[[tenants.teams]]
name = "t"
"#,
            "t.toml",
        )
        .expect("a valid fleet");
        ClusterIndex::new(&fleet.clusters[0])
    }

    fn occupy(index: &mut ClusterIndex, node: u32, accelerators: u32) {
        let before = index.avail(node);
        index.used[node as usize] += accelerators;
        index.allocated += u64::from(accelerators);
        let mut changes = Vec::new();
        index.reindex(node, before, &mut changes);
        index.apply_idle_changes(&changes);
    }

    /// Several gangs fit at once only where nodes hold each: whole idle nodes for the large
    /// ones, room on one node for each small one — not a sum of scattered accelerators.
    #[test]
    fn gangs_fit_together_only_where_nodes_hold_each() {
        let mut index = racked();
        // Eight nodes of 8: six full, node 6 with 3 free, node 7 idle.
        for node in 0..6 {
            occupy(&mut index, node, 8);
        }
        occupy(&mut index, 6, 5);
        assert_eq!(index.free(), 11);
        assert!(index.fits_all(&[8]));
        assert!(!index.fits_all(&[8, 8]), "one idle node");
        assert!(index.fits_all(&[8, 3]));
        assert!(
            !index.fits_all(&[8, 4]),
            "node 6 holds 3, the idle node the 8"
        );
        assert!(
            index.fits_all(&[4, 3, 2]),
            "4 and 2 on the idle node, 3 on node 6"
        );
        assert!(!index.fits_all(&[6, 6]), "11 free, but no two nodes hold 6");
        assert!(index.fits_all(&[]));
        // As `place` does it, one after the other.
        for sizes in [[4u32, 3, 2].as_slice(), &[8, 3]] {
            let mut copy = index.clone();
            for &size in sizes {
                assert!(copy.place(size).is_some(), "{sizes:?}");
            }
        }
    }

    /// A sub-node share of a failed node goes to its own rack (a partly used node there
    /// first, else an idle one), not to the best fit elsewhere in the cluster.
    #[test]
    fn a_replacement_share_stays_in_the_failed_nodes_rack() {
        let mut index = racked();
        // Node 0 fails; rack 0 holds nodes 0-3, rack 1 nodes 4-7.
        for node in 0..8 {
            occupy(&mut index, node, 8);
        }
        index.release(&[
            NodeShare {
                node: 5,
                accelerators: 4,
            },
            NodeShare {
                node: 2,
                accelerators: 8,
            },
        ]);
        index.set_down(0, true);
        assert_eq!(
            index.place_near(4, 0),
            Some(NodeShare {
                node: 2,
                accelerators: 4
            })
        );
        // Now node 2 is partly used in rack 0: the next share takes its other half.
        assert_eq!(index.place_near(4, 1).map(|s| s.node), Some(2));
        // Rack 0 is full: the partly used node of rack 1.
        assert_eq!(index.place_near(4, 1).map(|s| s.node), Some(5));
        assert_eq!(index.place_near(4, 1), None);
        index.check().expect("a consistent index");
    }

    proptest::proptest! {
        /// Growth in place counted from a run's shares agrees with the search over a map of
        /// what it gives back, whatever else holds the cluster, whichever nodes are down.
        #[test]
        fn growth_counted_from_shares_agrees_with_the_map(
            others in proptest::collection::vec(1u32..=16, 0..6),
            run in 1u32..=40,
            down in proptest::collection::vec(0u32..8, 0..3),
            min_extra in 1u32..=8,
            span in 0u32..=40,
        ) {
            let mut index = racked();
            for size in others {
                let _ = index.place(size);
            }
            let Some(own) = index.place(run) else {
                return Ok(());
            };
            for node in down {
                index.set_down(node, true);
            }
            let (min, max) = (run + min_extra, run + min_extra + span);
            let mut released = std::collections::BTreeMap::new();
            for share in &own {
                *released.entry(share.node).or_insert(0) += share.accelerators;
            }
            proptest::prop_assert_eq!(
                index.largest_growth(min, max, &own),
                index.largest_fit_after_release(min, max, &released)
            );
        }
    }
}
