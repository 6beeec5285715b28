//! Host bindings generated from the WIT package in `wit/`.
//!
//! Every import is trappable, so a host function can fail the call with a trap (a log flood, an
//! internal error) as well as return the WIT-level error the guest handles.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "step-executor",
    imports: { default: trappable },
    with: {
        "runledger:plugin/artifacts.input-artifact": super::host::artifacts::InputHandle,
        "runledger:plugin/artifacts.output-artifact": super::host::artifacts::OutputHandle,
    },
});

pub(crate) use self::exports::runledger::plugin::executor::{
    Error as GuestError, StepContext as WitStepContext,
};
pub(crate) use self::runledger::plugin::types;
