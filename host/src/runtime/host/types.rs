use crate::runtime::bindings::runledger::plugin::types;
use crate::runtime::state::CallState;

impl types::Host for CallState {}
