//! Stops a running script: Ctrl-C, the `--timeout` wall-clock deadline, the CPU budget and the memory budget.
//!
//! The CPU budget exists because one Rhai operation is not one unit of work: `push` re-measures the
//! whole array each time, so 250,000 pushes take 40 s (measured) though `max_operations` counts only
//! a million. Counting the script thread's own CPU time catches such work, and waiting on a server
//! (the thread sleeps) never counts against it. The memory budget exists because Rhai checks sizes
//! when values are passed around, not when a map gains a key by `m[k] = v`: such a loop filled 1.2 GB
//! before `max_operations` stopped it (measured).

use crate::interrupt::Interrupt;
use crate::memory;
use cpu_time::ThreadTime;
use std::cell::Cell;
use std::time::{Duration, Instant};

/// How often (in operations) the clocks are looked at: a loop of cheap operations runs about 300M a
/// second, and reading a clock at every one made `loop {}` three times slower (measured).
const SAMPLE_EVERY: u64 = 1024;
/// How often (in wall time) the thread's CPU time is read: that read is a system call of about 1 µs.
const CPU_READ_EVERY: Duration = Duration::from_millis(100);

/// What one evaluation (a script, or one REPL line) may use; `None` is unlimited.
#[derive(Clone, Debug, Default)]
pub struct Budgets {
    /// Wall-clock time (`--timeout`).
    pub deadline: Option<Duration>,
    /// The script thread's own CPU time (`script_cpu_seconds`).
    pub cpu: Option<Duration>,
    /// Heap bytes added to what the process held when the evaluation began (`script_memory_mb`).
    pub memory: Option<usize>,
}

pub struct Watchdog {
    interrupt: Interrupt,
    budgets: Budgets,
    run: Cell<Run>,
    /// Stops the evaluation at its deadline even while it waits inside a call (a server that never answers).
    alarm: std::cell::RefCell<Option<Alarm>>,
}

/// A thread that raises the interrupt when the deadline passes; dropping it disarms it.
struct Alarm {
    _disarm: std::sync::mpsc::Sender<()>,
}

impl Alarm {
    fn arm(interrupt: Interrupt, after: Duration) -> Alarm {
        let (disarm, armed) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = armed.recv_timeout(after) {
                interrupt.stop(format!("stopped: the script ran longer than --timeout {} s", after.as_secs()));
            }
        });
        Alarm { _disarm: disarm }
    }
}

/// Where the current evaluation (a script, or one REPL line) started.
#[derive(Clone, Copy)]
struct Run {
    cpu: Option<Duration>,
    cpu_read_at: Instant,
    heap: usize,
}

impl Watchdog {
    pub fn new(interrupt: Interrupt, budgets: Budgets) -> Self {
        Watchdog { interrupt, budgets, run: Cell::new(Run::now()), alarm: Default::default() }
    }

    /// Starts the clocks for a new evaluation (on the thread that will run it).
    pub fn begin(&self) {
        self.end();
        if !self.interrupt.by_ctrl_c() {
            // What stopped the last evaluation (a deadline) does not stop this one.
            self.interrupt.reset();
        }
        self.run.set(Run::now());
        *self.alarm.borrow_mut() = self.budgets.deadline.map(|d| Alarm::arm(self.interrupt.clone(), d));
    }

    /// The evaluation is over: its deadline no longer applies.
    pub fn end(&self) {
        self.alarm.borrow_mut().take();
    }

    /// Called by the engine between operations; `Some(reason)` stops the script.
    #[inline]
    pub fn check(&self, ops: u64) -> Option<String> {
        // A stopped script ends at once, unless a bulk job just handed it its results to write down.
        if self.interrupt.is_raised() && !self.interrupt.in_grace() {
            return Some(self.interrupt.reason());
        }
        // The heap is read after every operation (one atomic load): data that doubles each step must not get
        // many steps past the budget, and Rhai's own size limits are off (see `engine::build`).
        let mut run = self.run.get();
        if let Some(budget) = self.budgets.memory.filter(|b| memory::allocated().saturating_sub(run.heap) > *b) {
            return Some(format!(
                "stopped: the script holds more than {} MB (data that keeps growing?). If it is meant to, raise \
                 script_memory_mb in the config",
                budget >> 20
            ));
        }
        if !ops.is_multiple_of(SAMPLE_EVERY) {
            return None;
        }
        let now = Instant::now();
        if now.duration_since(run.cpu_read_at) < CPU_READ_EVERY {
            return None;
        }
        run.cpu_read_at = now;
        self.run.set(run);
        let used = thread_cpu().zip(run.cpu).map(|(now, start)| now.saturating_sub(start));
        match (used, self.budgets.cpu) {
            (Some(used), Some(budget)) if used > budget => Some(format!(
                "stopped: the script computed for {} s without finishing (a loop that never ends, or data that \
                 keeps growing?); waiting on servers does not count. If it is meant to, raise script_cpu_seconds \
                 in the config",
                budget.as_secs()
            )),
            _ => None,
        }
    }
}

impl Run {
    fn now() -> Run {
        Run { cpu: thread_cpu(), cpu_read_at: Instant::now(), heap: memory::allocated() }
    }
}

fn thread_cpu() -> Option<Duration> {
    ThreadTime::try_now().ok().map(|t| t.as_duration())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(ms: u64) -> Budgets {
        Budgets { cpu: Some(Duration::from_millis(ms)), ..Default::default() }
    }

    fn spin(d: Duration) {
        let start = ThreadTime::now();
        while start.elapsed() < d {
            std::hint::black_box(0u64);
        }
    }

    #[test]
    fn cpu_spent_past_the_budget_stops_the_run_and_a_new_run_starts_afresh() {
        let dog = Watchdog::new(Interrupt::default(), cpu(50));
        dog.begin();
        spin(Duration::from_millis(120));
        assert_eq!(dog.check(SAMPLE_EVERY - 1), None, "only sampled operations read the clock");
        let reason = dog.check(SAMPLE_EVERY).expect("over budget");
        assert!(reason.contains("computed for 0 s") && reason.contains("script_cpu_seconds"), "{reason}");
        dog.begin();
        assert_eq!(dog.check(SAMPLE_EVERY), None, "the next evaluation gets a fresh budget");
    }

    #[test]
    fn memory_held_past_the_budget_stops_the_run() {
        // The heap is the process's: budgets far above what the other tests running alongside allocate.
        let dog = Watchdog::new(Interrupt::default(), Budgets { memory: Some(256 << 20), ..Default::default() });
        dog.begin();
        assert_eq!(dog.check(SAMPLE_EVERY), None);
        let held = vec![1u8; 512 << 20];
        let reason = dog.check(SAMPLE_EVERY).expect("over budget");
        assert!(reason.contains("more than 256 MB") && reason.contains("script_memory_mb"), "{reason}");
        drop(held);
        assert_eq!(dog.check(SAMPLE_EVERY), None, "freed again");
    }

    #[test]
    fn sleeping_does_not_use_the_cpu_budget() {
        let dog = Watchdog::new(Interrupt::default(), cpu(50));
        dog.begin();
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(dog.check(SAMPLE_EVERY), None);
    }

    #[test]
    fn the_wall_clock_deadline_counts_from_each_run_and_ctrl_c_wins_at_once() {
        let interrupt = Interrupt::default();
        let dog = Watchdog::new(
            interrupt.clone(),
            Budgets { deadline: Some(Duration::from_millis(30)), ..Default::default() },
        );
        dog.begin();
        std::thread::sleep(Duration::from_millis(200));
        // The alarm acts on its own, so a script waiting inside a call is stopped too.
        assert!(interrupt.is_raised() && !interrupt.by_ctrl_c(), "the deadline raised the interrupt");
        assert!(dog.check(3).is_some_and(|r| r.contains("--timeout")));
        dog.begin();
        assert_eq!(dog.check(SAMPLE_EVERY), None, "a new evaluation starts its own deadline");
        dog.end();
        std::thread::sleep(Duration::from_millis(100));
        assert!(!interrupt.is_raised(), "an ended evaluation's deadline no longer fires");
        interrupt.raise();
        assert_eq!(dog.check(3).as_deref(), Some("cancelled by Ctrl-C"));
        assert!(interrupt.by_ctrl_c());
    }
}
