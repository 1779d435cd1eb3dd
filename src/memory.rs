//! The process's heap, counted: every allocation goes through a counting wrapper around the system allocator,
//! so a script's memory can be capped (`script_memory_mb`). Rhai checks sizes when values are passed around,
//! not when a map gains a key by `m[k] = v`, so without this a loop could fill gigabytes before any limit tripped.

use std::alloc::System;

#[global_allocator]
static ALLOCATOR: cap::Cap<System> = cap::Cap::new(System, usize::MAX);

/// Bytes currently allocated on the heap by this process.
pub fn allocated() -> usize {
    ALLOCATOR.allocated()
}
