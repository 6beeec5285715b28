//! Host bindings generated from the WIT package in `wit/`, one `bindgen!` per world.
//!
//! Every import is trappable, so a host function can fail the call with a trap (a log flood, an
//! internal error) as well as return the WIT-level error the guest handles. The step-executor
//! bindings are at the top of this module. The metric-validator and policy bindings reuse its
//! `types` and `logging` modules, and the policy bindings reuse the validator's
//! `governance-types`, so one `Linker` contains every import exactly once.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "step-executor",
    imports: { default: trappable },
    with: {
        "runledger:plugin/artifacts.input-artifact": super::host::artifacts::InputHandle,
        "runledger:plugin/artifacts.output-artifact": super::host::artifacts::OutputHandle,
    },
});

/// Bindings of the `metric-validator` world.
pub(crate) mod validator {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "metric-validator",
        imports: { default: trappable },
        with: {
            "runledger:plugin/types": crate::runtime::bindings::runledger::plugin::types,
            "runledger:plugin/logging": crate::runtime::bindings::runledger::plugin::logging,
        },
    });
}

/// Bindings of the `policy` world.
pub(crate) mod policy {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "policy",
        imports: { default: trappable },
        with: {
            "runledger:plugin/types": crate::runtime::bindings::runledger::plugin::types,
            "runledger:plugin/logging": crate::runtime::bindings::runledger::plugin::logging,
            "runledger:plugin/governance-types":
                crate::runtime::bindings::validator::runledger::plugin::governance_types,
        },
    });
}

pub(crate) use self::exports::runledger::plugin::executor::{
    Error as GuestError, StepContext as WitStepContext,
};
pub(crate) use self::policy::exports::runledger::plugin::promotion_policy;
pub(crate) use self::runledger::plugin::types;
pub(crate) use self::validator::runledger::plugin::governance_types;
