//! Behaviour: baselines learned from traffic, in fixed memory, and what departs from them.
//!
//! - Per endpoint (and, for sizes and latency, per status class of the endpoint): the rate
//!   of calls per minute (an exponentially weighted mean and variance), and the log sizes
//!   of requests and responses and the log latency (running mean and variance). A minute
//!   far above its rate is a traffic spike; a transaction far above its sizes or latency is
//!   unusual. Each endpoint also counts distinct request targets and clients per window
//!   (linear counting over bitmaps) for parameter enumeration spread over many clients.
//! - Per client (inside the detector's client table): the same rate per minute, 4xx
//!   answers other than 404, and two endpoint slots that count distinct targets and follow
//!   walks through consecutive object ids.
//! - Per principal (or client address when no principal is visible): response bytes and
//!   sensitive records per window, against its own earlier windows or, while it has none,
//!   against all principals' windows.
//!
//! Nothing is judged before it has been learned: a baseline needs `learning_secs` of packet
//! time and a minimum of samples. Every table is capped; what the cap turns away is counted.

use crate::detector::NS;

/// Running mean and variance (Welford), in f32 to keep tables small.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Welford {
    pub n: u32,
    pub mean: f32,
    m2: f32,
}

impl Welford {
    pub fn add(&mut self, x: f32) {
        self.n = self.n.saturating_add(1);
        let d = x - self.mean;
        self.mean += d / self.n as f32;
        self.m2 += d * (x - self.mean);
    }

    pub fn sd(&self) -> f32 {
        if self.n < 2 {
            0.0
        } else {
            (self.m2 / (self.n - 1) as f32).max(0.0).sqrt()
        }
    }
}

/// Calls per minute: the count of the current minute and an exponentially weighted mean
/// and variance of earlier minutes (quiet minutes included, up to an hour of them).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rate {
    minute: i64,
    pub count: u32,
    mean: f32,
    var: f32,
    pub minutes: u32,
    /// A finding was raised for the current minute.
    pub flagged: bool,
}

const ALPHA: f32 = 0.05;

impl Rate {
    /// Count one call at `ts`; the minutes that ended fold into the baseline. Returns the
    /// count of the minute that ended, if one did.
    pub fn tick(&mut self, ts: i64) -> Option<u32> {
        let m = ts.div_euclid(60 * NS);
        if self.minutes == 0 && self.count == 0 {
            self.minute = m;
        }
        let mut closed = None;
        if m > self.minute {
            let quiet = (m - self.minute - 1).min(60) as u32;
            closed = Some(self.count);
            self.fold(self.count as f32);
            for _ in 0..quiet {
                self.fold(0.0);
            }
            self.minute = m;
            self.count = 0;
            self.flagged = false;
        }
        self.count = self.count.saturating_add(1);
        closed
    }

    fn fold(&mut self, x: f32) {
        if self.minutes == 0 {
            self.mean = x;
        } else {
            let d = x - self.mean;
            self.mean += ALPHA * d;
            self.var = (1.0 - ALPHA) * (self.var + ALPHA * d * d);
        }
        self.minutes = self.minutes.saturating_add(1);
    }

    /// The current minute is a spike: learned, at least `floor` calls, `ratio` times the
    /// usual rate and six deviations above it.
    pub fn spike(&self, learn_minutes: u32, floor: u32, ratio: f32) -> bool {
        self.minutes >= learn_minutes
            && self.count >= floor
            && self.count as f32 > ratio * self.mean.max(1.0)
            && self.count as f32 > self.mean + 6.0 * self.var.sqrt()
    }

    pub fn usual(&self) -> f32 {
        self.mean
    }
}

/// Sizes and latency of one status class of an endpoint.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Shape {
    pub req: Welford,
    pub resp: Welford,
    pub latency: Welford,
}

/// `x` departs from `w` (in log space): learned from `min` samples, over `floor`, `ratio`
/// times the geometric mean and four deviations above it.
pub(crate) fn unusual(w: &Welford, x: u64, min: u32, floor: u64, ratio: f32) -> bool {
    if w.n < min || x < floor {
        return false;
    }
    let l = ln(x);
    l > w.mean + ratio.ln() && l > w.mean + 4.0 * w.sd()
}

/// ln(x + 1), from the float's exponent and a quadratic for the mantissa's log2 (within
/// 0.01 of the exact value: sizes and latencies are judged in multiples, and libm's log
/// showed in profiles at three calls per transaction).
pub(crate) fn ln(x: u64) -> f32 {
    let bits = (x as f32 + 1.0).to_bits();
    let e = ((bits >> 23) & 0xff) as f32 - 127.0;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    (e + (-0.344_848_43 * m + 2.024_665_8) * m - 1.674_877_6) * std::f32::consts::LN_2
}

/// One endpoint's baselines (about 300 bytes).
#[derive(Debug, Clone)]
pub(crate) struct Base {
    pub first_ts: i64,
    pub rate: Rate,
    /// By status class: 2xx, 3xx, 4xx, 5xx and no response.
    pub shapes: [Shape; 5],
    pub spread: Spread,
    /// Reads of objects by clients that responses had taught ids, and how many of those
    /// ids the responses had given them.
    pub id_reads: u32,
    pub id_reads_given: u32,
}

impl Base {
    pub fn new(ts: i64) -> Base {
        Base {
            first_ts: ts,
            rate: Rate::default(),
            shapes: [Shape::default(); 5],
            spread: Spread::new(ts),
            id_reads: 0,
            id_reads_given: 0,
        }
    }

    /// Clients of this endpoint read objects by ids they were given (nine reads in ten,
    /// over `min` reads): only there is reading others a sign.
    pub fn follows_ids(&self, min: u32) -> bool {
        self.id_reads >= min && self.id_reads_given as u64 * 10 >= self.id_reads as u64 * 9
    }
}

pub(crate) fn class(status: u16) -> usize {
    match status {
        200..=299 => 0,
        300..=399 => 1,
        400..=499 => 2,
        500..=599 => 3,
        _ => 4,
    }
}

/// Distinct targets and distinct clients of one endpoint in a window, with how many
/// answers were failures (4xx).
#[derive(Debug, Clone)]
pub(crate) struct Spread {
    pub start: i64,
    targets: [u64; 8],
    clients: [u64; 4],
    pub requests: u32,
    pub failures: u32,
    pub flagged: bool,
}

impl Spread {
    pub fn new(ts: i64) -> Spread {
        Spread { start: ts, targets: [0; 8], clients: [0; 4], requests: 0, failures: 0, flagged: false }
    }

    pub fn add(&mut self, target: u64, client: u64, failed: bool) {
        set(&mut self.targets, target);
        set(&mut self.clients, client);
        self.requests = self.requests.saturating_add(1);
        self.failures += failed as u32;
    }

    pub fn targets(&self) -> f64 {
        distinct(&self.targets)
    }

    pub fn clients(&self) -> f64 {
        distinct(&self.clients)
    }
}

fn set(bits: &mut [u64], h: u64) {
    let n = bits.len() as u64 * 64;
    let i = (h >> 7) % n;
    bits[(i / 64) as usize] |= 1 << (i % 64);
}

/// Linear counting: distinct items hashed into `bits`.
pub(crate) fn distinct(bits: &[u64]) -> f64 {
    let m = bits.len() as f64 * 64.0;
    let zeros = bits.iter().map(|w| w.count_zeros()).sum::<u32>() as f64;
    if zeros == 0.0 {
        return m * m.ln();
    }
    -m * (zeros / m).ln()
}

/// What one client does on one endpoint: distinct targets, failures, walks through ids.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Slot {
    pub endpoint: u64,
    pub start: i64,
    pub last_ts: i64,
    targets: [u64; 4],
    pub requests: u32,
    pub failures: u32,
    pub last_id: u64,
    /// Consecutive requests each one id away from the previous, in the same direction.
    pub walk: u32,
    step: i8,
}

impl Slot {
    pub fn targets(&self) -> f64 {
        distinct(&self.targets)
    }

    pub fn add(&mut self, target: u64, failed: bool, id: Option<u64>) {
        set(&mut self.targets, target);
        self.requests = self.requests.saturating_add(1);
        self.failures += failed as u32;
        if let Some(id) = id {
            let step = match id.checked_sub(self.last_id) {
                Some(1) => 1,
                _ if self.last_id.checked_sub(id) == Some(1) => -1,
                _ => 0,
            };
            if step != 0 && (self.walk == 0 || step == self.step) {
                self.walk += 1;
                self.step = step;
            } else if id != self.last_id {
                self.walk = 0;
            }
            self.last_id = id;
        }
    }
}

/// The slot of `endpoint` among a client's: the one it has, else the least recently used,
/// reset.
pub(crate) fn slot(slots: &mut [Slot], endpoint: u64, ts: i64, window: i64) -> &mut Slot {
    let i = match slots.iter().position(|s| s.endpoint == endpoint) {
        Some(i) => i,
        None => {
            let i = (0..slots.len()).min_by_key(|&i| slots[i].last_ts).unwrap_or(0);
            slots[i] = Slot { endpoint, start: ts, ..Slot::default() };
            i
        }
    };
    let s = &mut slots[i];
    if ts - s.start > window {
        *s = Slot { endpoint, start: ts, last_id: s.last_id, ..Slot::default() };
    }
    s.last_ts = ts;
    s
}

/// One principal's data per window, and its usual window.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Volume {
    pub start: i64,
    pub last_ts: i64,
    pub bytes: u64,
    pub records: u64,
    /// Means over earlier windows (exponentially weighted) and how many there were.
    usual_bytes: f64,
    usual_records: f64,
    pub windows: u32,
    pub flagged: bool,
}

impl Volume {
    /// Roll the window over when it ended; the closed window feeds the population too.
    pub fn roll(&mut self, ts: i64, window: i64, population: &mut [Welford; 2]) {
        if self.windows == 0 && self.bytes == 0 && self.records == 0 {
            self.start = ts;
        }
        if ts - self.start > window {
            population[0].add(ln(self.bytes));
            population[1].add(ln(self.records));
            let a = if self.windows == 0 { 1.0 } else { 0.2 };
            self.usual_bytes += a * (self.bytes as f64 - self.usual_bytes);
            self.usual_records += a * (self.records as f64 - self.usual_records);
            self.windows += 1;
            self.start = ts;
            self.bytes = 0;
            self.records = 0;
            self.flagged = false;
        }
        self.last_ts = ts;
    }

    /// The usual window of this principal (own history after `learn` windows, else the
    /// population's geometric mean after 20 windows of anyone): (bytes, records).
    pub fn usual(&self, learn: u32, population: &[Welford; 2]) -> Option<(f64, f64)> {
        if self.windows >= learn {
            Some((self.usual_bytes, self.usual_records))
        } else if population[0].n >= 20 {
            Some(((population[0].mean as f64).exp() - 1.0, (population[1].mean as f64).exp() - 1.0))
        } else {
            None
        }
    }
}

/// Addresses from threat lists (Tor exits, known scanners...): sorted, merged ranges.
#[derive(Debug, Clone, Default)]
pub struct ThreatList {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl ThreatList {
    /// Add a list's ranges: one address or CIDR range per line; `#` starts a comment;
    /// blank lines are skipped. `name` names the list in errors.
    pub fn parse(&mut self, name: &str, text: &str) -> Result<(), String> {
        for (i, line) in text.lines().enumerate() {
            let l = line.split('#').next().unwrap_or("").trim();
            if l.is_empty() {
                continue;
            }
            let net: crate::detector::Net = l.parse().map_err(|e| format!("{name}: line {}: {e}", i + 1))?;
            match net.range() {
                Range::V4(a, b) => self.v4.push((a, b)),
                Range::V6(a, b) => self.v6.push((a, b)),
            }
        }
        merge(&mut self.v4);
        merge(&mut self.v6);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        fn find<T: Ord + Copy>(v: &[(T, T)], x: T) -> bool {
            let i = v.partition_point(|r| r.0 <= x);
            i > 0 && v[i - 1].1 >= x
        }
        match ip {
            std::net::IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            std::net::IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => find(&self.v4, u32::from(v4)),
                None => find(&self.v6, u128::from(a)),
            },
        }
    }
}

pub(crate) enum Range {
    V4(u32, u32),
    V6(u128, u128),
}

fn merge<T: Ord + Copy + num_like::Succ>(v: &mut Vec<(T, T)>) {
    v.sort();
    let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
    for &(a, b) in v.iter() {
        match out.last_mut() {
            Some(last) if a <= last.1.succ() => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    *v = out;
}

mod num_like {
    pub trait Succ {
        fn succ(self) -> Self;
    }
    impl Succ for u32 {
        fn succ(self) -> Self {
            self.saturating_add(1)
        }
    }
    impl Succ for u128 {
        fn succ(self) -> Self {
            self.saturating_add(1)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fast_ln_is_close() {
        let mut x = 0u64;
        while x < 1 << 40 {
            let exact = (x as f64 + 1.0).ln() as f32;
            assert!((super::ln(x) - exact).abs() < 0.01, "{x}: {} vs {exact}", super::ln(x));
            x = x * 3 / 2 + 1;
        }
    }
}
