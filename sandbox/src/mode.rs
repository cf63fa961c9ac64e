//! The Lambda modes a sandbox emulates (docs/lambda-modes.md, docs/reference.md §8): on-demand (the
//! default), provisioned concurrency, SnapStart and Managed Instances. A mode decides the value of
//! `AWS_LAMBDA_INITIALIZATION_TYPE`, the `initializationType` of the init records, whether the
//! environment freezes between invokes, which events extensions may register for, and the shape of
//! `platform.report`.

use perfmon_protocol::contract::LambdaMode;
use perfmon_protocol::telemetry::InitType;

/// Default `AWS_LAMBDA_MAX_CONCURRENCY` of [`Mode::ManagedInstances`] in this sandbox (Lambda's
/// defaults are per vCPU: Python 16, Node.js 64, Rust 8; one small host runs the tests).
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;

/// How the execution environment is created and driven.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Mode {
    /// Init on the first invoke; one invoke at a time; frozen between invokes.
    #[default]
    OnDemand,
    /// Init ahead of invokes (`provisioned-concurrency`); the reports carry no `initDurationMs`.
    ProvisionedConcurrency,
    /// Init (`snap-start`), snapshot (freeze), then before the first invoke a restore:
    /// `platform.restoreStart` / `restoreRuntimeDone` / `restoreReport`. With `restore_fails` the
    /// first restore of the sandbox fails (see [`crate::SandboxConfig::mode`]).
    SnapStart { restore_fails: bool },
    /// Lambda Managed Instances (`lambda-managed-instances`): `max_concurrency` runtime worker
    /// processes take invokes at once, no freeze, no `INVOKE` registration, 2025-01-29 records.
    ManagedInstances { max_concurrency: usize },
}

impl Mode {
    /// The contract's mode this one emulates (without the sandbox's own parameters).
    pub fn lambda_mode(&self) -> LambdaMode {
        match self {
            Self::OnDemand => LambdaMode::OnDemand,
            Self::ProvisionedConcurrency => LambdaMode::ProvisionedConcurrency,
            Self::SnapStart { .. } => LambdaMode::SnapStart,
            Self::ManagedInstances { .. } => LambdaMode::ManagedInstances,
        }
    }

    /// The value of `AWS_LAMBDA_INITIALIZATION_TYPE`.
    pub fn init_type_str(&self) -> &'static str {
        self.lambda_mode().as_str()
    }

    /// `initializationType` of `platform.initStart` / `initRuntimeDone` / `initReport`.
    pub fn init_type(&self) -> InitType {
        self.lambda_mode().init_type()
    }

    /// Parses a `--mode` value by [`LambdaMode::parse`] (`on-demand`, `provisioned-concurrency`,
    /// `snap-start`, `managed-instances` or `lambda-managed-instances`).
    pub fn parse(s: &str, max_concurrency: usize, restore_fails: bool) -> Option<Self> {
        Some(match LambdaMode::parse(s)? {
            LambdaMode::OnDemand => Self::OnDemand,
            LambdaMode::ProvisionedConcurrency => Self::ProvisionedConcurrency,
            LambdaMode::SnapStart => Self::SnapStart { restore_fails },
            LambdaMode::ManagedInstances => Self::ManagedInstances { max_concurrency },
        })
    }

    /// Runtime worker processes: `max_concurrency` on Managed Instances, else 1.
    pub fn workers(&self) -> usize {
        match self {
            Self::ManagedInstances { max_concurrency } => (*max_concurrency).max(1),
            _ => 1,
        }
    }

    pub fn is_managed_instances(&self) -> bool {
        matches!(self, Self::ManagedInstances { .. })
    }

    /// Whether the environment freezes between invokes (everything but Managed Instances).
    pub fn freezes(&self) -> bool {
        !self.is_managed_instances()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in [
            Mode::OnDemand,
            Mode::ProvisionedConcurrency,
            Mode::SnapStart { restore_fails: false },
            Mode::ManagedInstances { max_concurrency: 4 },
        ] {
            assert_eq!(Mode::parse(m.init_type_str(), 4, false), Some(m.clone()));
            assert_eq!(String::from(m.init_type()), m.init_type_str());
        }
        assert_eq!(Mode::parse("managed-instances", 3, false), Some(Mode::ManagedInstances { max_concurrency: 3 }));
        assert_eq!(Mode::parse("x", 1, false), None);
        assert_eq!(Mode::ManagedInstances { max_concurrency: 0 }.workers(), 1);
        assert!(!Mode::ManagedInstances { max_concurrency: 2 }.freezes());
    }
}
