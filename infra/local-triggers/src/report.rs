//! One line per delivery, and what each source did in all.

use std::time::Duration;

use crate::invoke::Invocation;

/// One invocation of a function by a source.
pub struct Delivery<'a> {
    pub function: &'a str,
    /// The event's name in the template.
    pub source: &'a str,
    pub records: usize,
    /// Records the source keeps for another delivery (all of them when the invocation failed).
    pub failed: usize,
    pub invocation: &'a Invocation,
    pub took: Duration,
}

impl Delivery<'_> {
    /// `<function> <source>: <records> records, <outcome> in <ms> ms`.
    pub fn print(&self) {
        let outcome = match self.invocation {
            Invocation::Failed(why) => format!("invocation failed ({})", first_line(why)),
            Invocation::Unreachable(why) => format!("not delivered ({})", first_line(why)),
            Invocation::Returned(_) if self.failed > 0 => {
                format!("{} reported failed", self.failed)
            }
            Invocation::Returned(_) => "ok".to_owned(),
        };
        println!(
            "{} {}: {} records, {outcome} in {} ms",
            self.function,
            self.source,
            self.records,
            self.took.as_millis()
        );
    }
}

fn first_line(text: &str) -> &str {
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(200) {
        Some((cut, _)) => &line[..cut],
        None => line,
    }
}

/// What a source delivered before it stopped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub deliveries: usize,
    pub records: usize,
    /// Records the function took (its invocation succeeded and did not report them).
    pub taken: usize,
    pub failed_invocations: usize,
}

impl Tally {
    pub fn record(&mut self, delivery: &Delivery<'_>) {
        self.deliveries += 1;
        self.records += delivery.records;
        match delivery.invocation {
            Invocation::Failed(_) | Invocation::Unreachable(_) => self.failed_invocations += 1,
            Invocation::Returned(_) => self.taken += delivery.records - delivery.failed,
        }
    }
}

impl std::ops::Add for Tally {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            deliveries: self.deliveries + other.deliveries,
            records: self.records + other.records,
            taken: self.taken + other.taken,
            failed_invocations: self.failed_invocations + other.failed_invocations,
        }
    }
}

impl std::iter::Sum for Tally {
    fn sum<I: Iterator<Item = Self>>(tallies: I) -> Self {
        tallies.fold(Self::default(), |all, one| all + one)
    }
}
