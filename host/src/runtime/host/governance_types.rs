use crate::runtime::bindings::governance_types;
use crate::runtime::state::CallState;

impl governance_types::Host for CallState {}
