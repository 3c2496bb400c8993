//! Where "now" comes from: the shared clock of `common::clock`. Production uses the
//! system clock; tests inject a clock they can move, so "today" in SM-2 and the study
//! queue is under their control.

pub use common::clock::{Clock, ManualClock, SystemClock, seconds_to_next_midnight};
