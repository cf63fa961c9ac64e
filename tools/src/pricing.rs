//! Lambda prices and the monthly cost formula of `perfmon recommend`.
//!
//! Prices: AWS Lambda pricing, <https://aws.amazon.com/lambda/pricing/>, us-east-1, first duration tier
//! (the first 6 billion GB-s a month): x86_64 $0.0000166667 per GB-s, arm64 $0.0000133334 per GB-s,
//! requests $0.20 per million (the same constants as the extension's `EstimatedCost`,
//! `perfmon_protocol::contract::defaults`). The free tier and the cheaper tiers above 6 billion GB-s
//! are left out: the figures are list prices.
//!
//! Formula, for a month of 730 hours (AWS's pricing calculator's month):
//! `cost = requests × 0.20 / 1e6 + (billed ms / 1000) × (memory MB / 1024) × price per GB-s`, where
//! requests and billed ms are the window's totals scaled by `730 h / window length`.

use perfmon_protocol::contract::defaults;

/// Hours in the month the costs are quoted for (AWS's pricing calculator uses 730).
pub const HOURS_PER_MONTH: f64 = 730.0;

/// A Lambda architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Arm64,
}

impl Arch {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "x86_64" | "x86-64" | "amd64" => Some(Arch::X86_64),
            "arm64" | "aarch64" | "graviton" => Some(Arch::Arm64),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The us-east-1 list price per GB-s.
    pub fn list_price_gb_s(self) -> f64 {
        match self {
            Arch::X86_64 => defaults::PRICE_GB_S_X86_64,
            Arch::Arm64 => defaults::PRICE_GB_S_ARM64,
        }
    }
}

/// The prices used: GB-s by architecture and per request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    pub x86_64_gb_s: f64,
    pub arm64_gb_s: f64,
    pub per_request: f64,
}

impl Prices {
    /// The list prices, or `override_gb_s` (`--price-gb-s`, else `PERFMON_PRICE_GB_S`) as the price of
    /// the `current` architecture, the other one scaled by the list prices' ratio (arm64 = 0.8 × x86_64).
    pub fn new(current: Arch, override_gb_s: Option<f64>) -> Self {
        let list = Self {
            x86_64_gb_s: defaults::PRICE_GB_S_X86_64,
            arm64_gb_s: defaults::PRICE_GB_S_ARM64,
            per_request: defaults::PRICE_PER_REQUEST,
        };
        match override_gb_s {
            None => list,
            Some(p) => {
                let scale = p / current.list_price_gb_s();
                Self { x86_64_gb_s: list.x86_64_gb_s * scale, arm64_gb_s: list.arm64_gb_s * scale, ..list }
            }
        }
    }

    pub fn gb_s(&self, arch: Arch) -> f64 {
        match arch {
            Arch::X86_64 => self.x86_64_gb_s,
            Arch::Arm64 => self.arm64_gb_s,
        }
    }
}

/// A monthly cost and its parts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MonthlyCost {
    pub requests: f64,
    pub gb_s: f64,
    pub request_cost: f64,
    pub duration_cost: f64,
}

impl MonthlyCost {
    pub fn total(&self) -> f64 {
        self.request_cost + self.duration_cost
    }
}

/// The monthly cost of `invocations` and `billed_ms` seen over `window_days`, at `memory_mb` on `arch`.
pub fn monthly_cost(
    prices: &Prices,
    arch: Arch,
    memory_mb: f64,
    invocations: f64,
    billed_ms: f64,
    window_days: f64,
) -> MonthlyCost {
    let scale = HOURS_PER_MONTH / (window_days * 24.0);
    let requests = invocations * scale;
    let gb_s = billed_ms / 1000.0 * memory_mb / 1024.0 * scale;
    MonthlyCost { requests, gb_s, request_cost: requests * prices.per_request, duration_cost: gb_s * prices.gb_s(arch) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_by_hand() {
        // 1 million requests of 100 ms at 512 MB in 30 days 10 h (730 h): 50 000 GB-s.
        let p = Prices::new(Arch::X86_64, None);
        let c = monthly_cost(&p, Arch::X86_64, 512.0, 1e6, 1e8, 730.0 / 24.0);
        assert!((c.requests - 1e6).abs() < 1e-6);
        assert!((c.gb_s - 50_000.0).abs() < 1e-6);
        assert!((c.total() - (0.20 + 50_000.0 * 0.000_016_666_7)).abs() < 1e-9);
        let arm = monthly_cost(&p, Arch::Arm64, 512.0, 1e6, 1e8, 730.0 / 24.0);
        assert!((arm.duration_cost - 50_000.0 * 0.000_013_333_4).abs() < 1e-9);
    }

    #[test]
    fn override_scales_both_arches() {
        let p = Prices::new(Arch::X86_64, Some(0.00002));
        assert_eq!(p.x86_64_gb_s, 0.00002);
        assert!((p.arm64_gb_s / p.x86_64_gb_s - 0.000_013_333_4 / 0.000_016_666_7).abs() < 1e-12);
        let q = Prices::new(Arch::Arm64, Some(0.00001));
        assert_eq!(q.arm64_gb_s, 0.00001);
        assert_eq!(Arch::parse("aarch64"), Some(Arch::Arm64));
        assert_eq!(Arch::parse("sparc"), None);
    }
}
