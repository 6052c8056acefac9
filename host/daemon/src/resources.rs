//! What a node can run: its capacity (detected, or set by flags) and a ledger
//! of what replicas and placement groups have reserved from it.
//!
//! Every pipeline step replica reserves its step's `resources` while it is
//! part of the step's replica target; a reservation is returned when the
//! target drops (or the step stops) by dropping its [`Reservation`]. A
//! placement group reserves its bundles from the node at once, and each
//! bundle is itself a [`Ledger`] the steps placed in it reserve from. A
//! demand that does not fit is refused with a [`Shortfall`] that names the
//! resource, never queued forever.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// Amounts of each resource: cores, GPUs, memory and custom resources.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Amounts {
    /// CPU cores (fractions allowed).
    pub cpu: f64,
    /// GPUs.
    pub gpu: f64,
    /// Memory in MiB.
    pub memory_mib: f64,
    /// Named resources the operator declares (`--resource licence=2`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: BTreeMap<String, f64>,
}

impl Amounts {
    /// Each resource with its amount, custom ones by name.
    fn each(&self) -> impl Iterator<Item = (String, f64)> + '_ {
        [
            ("cpu".to_string(), self.cpu),
            ("gpu".to_string(), self.gpu),
            ("memory_mib".to_string(), self.memory_mib),
        ]
        .into_iter()
        .chain(self.custom.iter().map(|(k, v)| (k.clone(), *v)))
    }

    fn get(&self, resource: &str) -> f64 {
        match resource {
            "cpu" => self.cpu,
            "gpu" => self.gpu,
            "memory_mib" => self.memory_mib,
            other => self.custom.get(other).copied().unwrap_or(0.0),
        }
    }

    /// Whether every amount of `self` is within `free`.
    pub fn fits_in(&self, free: &Amounts) -> bool {
        self.each().all(|(r, need)| need <= free.get(&r) + 1e-9)
    }

    /// Adds `other` to these amounts.
    pub fn add_all(&mut self, other: &Amounts) {
        self.add(other, 1.0);
    }

    /// Takes `other` away from these amounts.
    pub fn subtract(&mut self, other: &Amounts) {
        self.add(other, -1.0);
    }

    fn add(&mut self, other: &Amounts, sign: f64) {
        self.cpu += sign * other.cpu;
        self.gpu += sign * other.gpu;
        self.memory_mib += sign * other.memory_mib;
        for (k, v) in &other.custom {
            let slot = self.custom.entry(k.clone()).or_default();
            *slot += sign * v;
            if slot.abs() < 1e-9 {
                self.custom.remove(k);
            }
        }
    }

    /// `what: must be a non-negative number` for the first bad amount.
    pub fn check(&self, what: &str) -> Result<(), String> {
        for (name, v) in self.each() {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!(
                    "{what}.{name}: must be a non-negative number, got {v}"
                ));
            }
        }
        Ok(())
    }

    /// Whether nothing is asked for.
    pub fn is_zero(&self) -> bool {
        self.each().all(|(_, v)| v == 0.0)
    }
}

/// Why a demand does not fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Shortfall {
    /// Where it was asked ("the node", "placement group `g` bundle 0").
    pub pool: String,
    /// The resource that ran short.
    pub resource: String,
    /// How much was asked.
    pub need: f64,
    /// How much is free.
    pub free: f64,
    /// How much there is in all.
    pub total: f64,
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "needs {} {} but {} has {} free of {}",
            round(self.need),
            self.resource,
            self.pool,
            round(self.free),
            round(self.total)
        )
    }
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// A pool of capacity and what is reserved from it.
#[derive(Debug)]
pub struct Ledger {
    name: String,
    capacity: Amounts,
    reserved: Mutex<Amounts>,
}

/// Capacity and use, for `/v1/node` and the cluster's heartbeats.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Usage {
    /// Everything there is.
    pub capacity: Amounts,
    /// What is reserved now.
    pub reserved: Amounts,
    /// What is left.
    pub free: Amounts,
}

impl Ledger {
    /// A pool called `name` (for messages) holding `capacity`.
    pub fn new(name: impl Into<String>, capacity: Amounts) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            capacity,
            reserved: Mutex::default(),
        })
    }

    /// The pool's capacity.
    pub fn capacity(&self) -> &Amounts {
        &self.capacity
    }

    /// Reserves `demand` if every resource in it fits, else says which does
    /// not. The reservation lasts until the returned value is dropped.
    pub fn reserve(self: &Arc<Self>, demand: &Amounts) -> Result<Reservation, Shortfall> {
        let mut reserved = self.reserved.lock().unwrap_or_else(|p| p.into_inner());
        self.fits(&reserved, demand)?;
        reserved.add(demand, 1.0);
        Ok(Reservation {
            ledger: Arc::clone(self),
            amounts: demand.clone(),
        })
    }

    /// Whether `demand` could ever fit, with nothing else reserved.
    pub fn could_fit(&self, demand: &Amounts) -> Result<(), Shortfall> {
        self.fits(&Amounts::default(), demand)
    }

    fn fits(&self, reserved: &Amounts, demand: &Amounts) -> Result<(), Shortfall> {
        for (resource, need) in demand.each() {
            if need <= 0.0 {
                continue;
            }
            let total = self.capacity.get(&resource);
            let free = total - reserved.get(&resource);
            // A little slack for sums of fractions (0.1 × 10).
            if need > free + 1e-9 {
                return Err(Shortfall {
                    pool: self.name.clone(),
                    resource,
                    need,
                    free: free.max(0.0),
                    total,
                });
            }
        }
        Ok(())
    }

    /// Capacity, reserved and free now.
    pub fn usage(&self) -> Usage {
        let reserved = self
            .reserved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut free = self.capacity.clone();
        free.add(&reserved, -1.0);
        Usage {
            capacity: self.capacity.clone(),
            reserved,
            free,
        }
    }
}

/// Resources held from a [`Ledger`]; returned when dropped.
#[derive(Debug)]
pub struct Reservation {
    ledger: Arc<Ledger>,
    amounts: Amounts,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut reserved = self
            .ledger
            .reserved
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        reserved.add(&self.amounts, -1.0);
    }
}

/// The reservations of one pipeline step: one per replica in its target.
#[derive(Debug)]
pub struct ReplicaGrant {
    ledger: Arc<Ledger>,
    demand: Amounts,
    held: Mutex<Vec<Reservation>>,
    /// Set while the step's pipeline is being replaced: the step serves its
    /// last requests without reservations, so the new version can take them.
    retired: std::sync::atomic::AtomicBool,
    /// The last shortfall that kept the step below the replicas its load
    /// wanted, until it scales without one.
    limited: Mutex<Option<Shortfall>>,
}

impl ReplicaGrant {
    /// A grant that reserves `demand` per replica from `ledger`.
    pub fn new(ledger: Arc<Ledger>, demand: Amounts) -> Self {
        Self {
            ledger,
            demand,
            held: Mutex::default(),
            retired: Default::default(),
            limited: Mutex::default(),
        }
    }

    /// Returns every reservation and stops reserving: the step is on its
    /// way out (its pipeline is being replaced).
    pub fn retire(&self) {
        self.retired
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.release_to(0);
    }

    /// Undoes [`ReplicaGrant::retire`] (the replacement failed) and
    /// reserves for `n` replicas again, as far as they fit.
    pub fn reinstate(&self, n: usize) {
        self.retired
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.ensure(n);
    }

    /// Holds reservations for at least `want` replicas if they fit, else as
    /// many as fit; returns how many of the `want` are covered.
    pub fn ensure(&self, want: usize) -> usize {
        if self.retired.load(std::sync::atomic::Ordering::Relaxed) {
            return want;
        }
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        while held.len() < want {
            match self.ledger.reserve(&self.demand) {
                Ok(r) => held.push(r),
                Err(short) => {
                    *self.limited.lock().unwrap_or_else(|p| p.into_inner()) = Some(short);
                    return held.len();
                }
            }
        }
        *self.limited.lock().unwrap_or_else(|p| p.into_inner()) = None;
        want
    }

    /// Like [`ReplicaGrant::ensure`], but all or nothing: the shortfall when
    /// `want` replicas do not fit.
    pub fn ensure_all(&self, want: usize) -> Result<(), Shortfall> {
        if self.ensure(want) < want {
            let short = self.limited_by().expect("a shortfall was recorded");
            self.release_to(0);
            return Err(short);
        }
        Ok(())
    }

    /// Returns reservations beyond `n` replicas.
    pub fn release_to(&self, n: usize) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .truncate(n);
    }

    /// Replicas reserved now.
    pub fn held(&self) -> usize {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Why the step runs fewer replicas than its load wants, if it does.
    pub fn limited_by(&self) -> Option<Shortfall> {
        self.limited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The node's capacity: what the machine has, with any operator overrides.
///
/// ```text
/// weft serve --cpus 8 --memory-mib 16384 --gpus 1 --resource licence=2
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CapacityConfig {
    /// Cores; default: the machine's.
    pub cpus: Option<f64>,
    /// Memory in MiB; default: the machine's.
    pub memory_mib: Option<f64>,
    /// GPUs; default: the hardware GPUs wgpu finds (Vulkan, Metal, DX12;
    /// software adapters such as llvmpipe do not count).
    pub gpus: Option<f64>,
    /// Custom resources.
    pub custom: BTreeMap<String, f64>,
}

impl CapacityConfig {
    /// The capacity: overrides where given, else detected.
    pub fn resolve(&self) -> Amounts {
        Amounts {
            cpu: self.cpus.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
            }),
            gpu: self.gpus.unwrap_or_else(|| detected_gpus().len() as f64),
            memory_mib: self.memory_mib.unwrap_or_else(machine_memory_mib),
            custom: self.custom.clone(),
        }
    }
}

/// The hardware GPUs of this machine, probed once per process (about
/// 0.1 s with a Vulkan loader; none without one).
pub fn detected_gpus() -> &'static [weft_nn::gpu::AdapterSummary] {
    static GPUS: std::sync::OnceLock<Vec<weft_nn::gpu::AdapterSummary>> =
        std::sync::OnceLock::new();
    GPUS.get_or_init(|| {
        let gpus = weft_nn::gpu::hardware_gpus();
        for g in &gpus {
            tracing::info!(gpu = %g, "GPU detected");
        }
        gpus
    })
}

/// Total memory from `/proc/meminfo`, or 1 GiB where there is none.
pub fn machine_memory_mib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(1024.0, |kib| (kib / 1024.0).floor())
}

/// Parses `NAME=AMOUNT` (a `--resource` flag).
pub fn parse_custom(s: &str) -> Result<(String, f64), String> {
    let (name, amount) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected NAME=AMOUNT, e.g. licence=2"))?;
    let amount = parse_amount(amount).map_err(|e| format!("`{s}`: {e}"))?;
    if name.is_empty() || ["cpu", "gpu", "memory_mib"].contains(&name) {
        return Err(format!(
            "`{s}`: name a custom resource (cpu, gpu and memory have their own flags)"
        ));
    }
    Ok((name.to_string(), amount))
}

/// `weft serve`'s amounts of a resource (`--cpus`, `--gpus`,
/// `--node-memory-mib`): a number, 0 or more.
pub fn parse_amount(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(_) => Err(format!("`{s}`: the amount must be 0 or more")),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amounts(cpu: f64, gpu: f64) -> Amounts {
        Amounts {
            cpu,
            gpu,
            ..Amounts::default()
        }
    }

    #[test]
    fn reservations_fit_or_say_what_is_short_and_return_on_drop() {
        let node = Ledger::new("the node", amounts(2.0, 1.0));
        let a = node.reserve(&amounts(1.5, 1.0)).unwrap();
        let short = node.reserve(&amounts(1.0, 0.0)).unwrap_err();
        assert_eq!(short.resource, "cpu");
        assert_eq!(
            short.to_string(),
            "needs 1 cpu but the node has 0.5 free of 2"
        );
        assert_eq!(
            node.reserve(&amounts(0.0, 1.0)).unwrap_err().resource,
            "gpu"
        );
        assert_eq!(node.usage().free.cpu, 0.5);
        drop(a);
        assert_eq!(node.usage().reserved, Amounts::default());
        // Fractions add up without drifting past the capacity.
        let tenths: Vec<_> = (0..20)
            .map(|_| node.reserve(&amounts(0.1, 0.0)).unwrap())
            .collect();
        assert!(node.reserve(&amounts(0.1, 0.0)).is_err());
        drop(tenths);
    }

    #[test]
    fn custom_resources_are_counted_by_name() {
        let mut cap = Amounts::default();
        cap.custom.insert("licence".into(), 1.0);
        let node = Ledger::new("the node", cap);
        let mut want = Amounts::default();
        want.custom.insert("licence".into(), 1.0);
        let held = node.reserve(&want).unwrap();
        assert_eq!(node.reserve(&want).unwrap_err().resource, "licence");
        want.custom.insert("tpu".into(), 1.0);
        drop(held);
        let short = node.reserve(&want).unwrap_err();
        assert_eq!((short.resource.as_str(), short.total), ("tpu", 0.0));
    }

    #[test]
    fn a_grant_holds_one_reservation_per_replica() {
        let node = Ledger::new("the node", amounts(3.0, 0.0));
        let grant = ReplicaGrant::new(node.clone(), amounts(1.0, 0.0));
        assert_eq!(grant.ensure(2), 2);
        assert!(grant.limited_by().is_none());
        assert_eq!(grant.ensure(5), 3);
        assert_eq!(grant.limited_by().unwrap().resource, "cpu");
        grant.release_to(1);
        assert_eq!(node.usage().reserved.cpu, 1.0);
        assert_eq!(grant.ensure(1), 1);
        assert!(grant.limited_by().is_none());
        let other = ReplicaGrant::new(node.clone(), amounts(1.0, 0.0));
        assert!(other.ensure_all(3).is_err());
        assert_eq!(other.held(), 0, "all or nothing");
        drop(grant);
        assert_eq!(node.usage().reserved.cpu, 0.0);
    }

    #[test]
    fn capacity_flags() {
        assert_eq!(parse_custom("licence=2").unwrap(), ("licence".into(), 2.0));
        for bad in ["licence", "x=y", "cpu=2", "=1", "a=-1"] {
            assert!(parse_custom(bad).is_err(), "{bad}");
        }
        let c = CapacityConfig {
            cpus: Some(4.0),
            ..CapacityConfig::default()
        }
        .resolve();
        assert_eq!((c.cpu, c.gpu), (4.0, 0.0));
        assert!(c.memory_mib > 0.0);
    }
}
