//! The monotonic clock a call sees, replacing WASI's.
//!
//! In deterministic mode time is virtual: it starts at zero, advances 1 µs per read, and a
//! sleep (`subscribe-duration` or `subscribe-instant`) completes at once by moving the clock
//! forward, so timing loops and sleeps behave the same on every execution. In both modes a
//! sleep never outlasts the call's wall-clock deadline: it wakes at the deadline and the next
//! epoch check fails the call with the timeout.

use crate::runtime::state::CallState;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant as StdInstant};
use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::clocks::WasiClocksView as _;
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock::{
    self, Duration as WasiDuration, Instant,
};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// Virtual time advanced per clock read, so a loop that waits for time to pass terminates.
const TICK_PER_READ_NANOS: u64 = 1_000;

/// The wall clock at virtual time zero: 2020-01-01T00:00:00Z.
const VIRTUAL_EPOCH: Duration = Duration::from_secs(1_577_836_800);

/// Virtual nanoseconds since the call started, shared by the wall and monotonic clocks.
#[derive(Debug, Clone, Default)]
pub(crate) struct VirtualClock(Arc<AtomicU64>);

impl VirtualClock {
    fn read(&self) -> u64 {
        self.0.fetch_add(TICK_PER_READ_NANOS, Ordering::Relaxed)
    }

    fn advance_to(&self, nanos: u64) {
        self.0.fetch_max(nanos, Ordering::Relaxed);
    }

    fn advance_by(&self, nanos: u64) {
        self.0.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl HostMonotonicClock for VirtualClock {
    fn resolution(&self) -> u64 {
        TICK_PER_READ_NANOS
    }

    fn now(&self) -> u64 {
        self.read()
    }
}

impl HostWallClock for VirtualClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(TICK_PER_READ_NANOS)
    }

    fn now(&self) -> Duration {
        VIRTUAL_EPOCH + Duration::from_nanos(self.read())
    }
}

struct Clocks;

impl HasData for Clocks {
    type Data<'a> = &'a mut CallState;
}

/// Replaces the monotonic clock functions of an already populated WASI linker.
pub(crate) fn shadow_monotonic_clock(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    monotonic_clock::add_to_linker::<CallState, Clocks>(linker, |state| state)?;
    linker.allow_shadowing(false);
    Ok(())
}

impl CallState {
    /// Subscribes to a sleep of `requested`, cut short at the call's deadline.
    fn bounded_sleep(&mut self, requested: Duration) -> wasmtime::Result<Resource<DynPollable>> {
        let remaining = self.deadline.saturating_duration_since(StdInstant::now());
        let nanos = u64::try_from(requested.min(remaining).as_nanos()).unwrap_or(u64::MAX);
        monotonic_clock::Host::subscribe_duration(&mut self.clocks(), nanos)
    }
}

impl monotonic_clock::Host for &mut CallState {
    fn now(&mut self) -> wasmtime::Result<Instant> {
        monotonic_clock::Host::now(&mut self.clocks())
    }

    fn resolution(&mut self) -> wasmtime::Result<Instant> {
        monotonic_clock::Host::resolution(&mut self.clocks())
    }

    fn subscribe_instant(&mut self, when: Instant) -> wasmtime::Result<Resource<DynPollable>> {
        if let Some(clock) = &self.virtual_clock {
            clock.advance_to(when);
            return self.bounded_sleep(Duration::ZERO);
        }
        let now = monotonic_clock::Host::now(&mut self.clocks())?;
        self.bounded_sleep(Duration::from_nanos(when.saturating_sub(now)))
    }

    fn subscribe_duration(
        &mut self,
        duration: WasiDuration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        if let Some(clock) = &self.virtual_clock {
            clock.advance_by(duration);
            return self.bounded_sleep(Duration::ZERO);
        }
        self.bounded_sleep(Duration::from_nanos(duration))
    }
}
