//! Lambda's event source mapping for one shard of a DynamoDB stream, as the Lambda developer guide describes
//! it, with the mapping's deployed settings (no AWS call here: the wiring reads the shard and invokes).
//!
//! - Batches of at most `BatchSize` records, in the shard's order; a batch that succeeds is checkpointed.
//! - `ReportBatchItemFailures` ("Configuring partial batch response with DynamoDB and Lambda"): "If the
//!   batchItemFailures array contains multiple items, Lambda uses the record with the lowest sequence number as
//!   the checkpoint. Lambda then retries all records starting from that checkpoint." An item identifier that is
//!   empty or names no record of the batch makes it a complete failure (retried from its first record).
//!   Without that response type the answer is not read: a returned function is a success.
//! - `BisectBatchOnFunctionError` ("Error handling for DynamoDB"): a function error "splits a failed batch into
//!   two smaller batches ... Splitting batches doesn't consume the retry quota"; with a partial batch response
//!   "the batch is bisected at the returned sequence number and Lambda retries only the remaining records"
//!   (what the checkpoint above does already).
//! - `MaximumRetryAttempts`: "Discard records after the specified number of retries" (-1: never), then the
//!   `OnFailure` destination gets a record of the batch ("metadata about the failed invocation"; "The actual
//!   records aren't included"). The guide does not say whether a retry from a later checkpoint starts the
//!   count again; here the retries belong to the batch's first record, so a batch that makes progress is not
//!   discarded for its earlier records' failures. `approximateInvokeCount` counts the invocations that held
//!   that first record (in larger batches too, before a checkpoint or a bisection).

use std::collections::VecDeque;

use anyhow::{Context, Result};

use crate::deployment::Mapping;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub batch_size: usize,
    /// `None`: retried until the records expire (-1, the default).
    pub max_retries: Option<u32>,
    pub bisect: bool,
    pub report_item_failures: bool,
}

impl Settings {
    /// The deployed mapping's settings (Lambda's defaults where it sets none: BatchSize 100, retries -1).
    pub fn of(m: &Mapping) -> Result<Self> {
        let max_retries = match m.maximum_retry_attempts {
            None | Some(-1) => None,
            Some(n) => Some(u32::try_from(n).context("MaximumRetryAttempts below -1")?),
        };
        Ok(Self {
            batch_size: m.batch_size.unwrap_or(100).max(1) as usize,
            max_retries,
            bisect: m.bisect_batch_on_function_error.unwrap_or(false),
            report_item_failures: m.function_response_types.iter().any(|t| t == "ReportBatchItemFailures"),
        })
    }
}

/// How an invocation of a batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The function returned; these are its `batchItemFailures` item identifiers.
    Returned(Vec<String>),
    /// The function failed (an error, a timeout): nothing it answered is read.
    FunctionError,
}

/// Records given up on: what the `OnFailure` destination is told of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discarded<R> {
    pub records: Vec<R>,
    /// Invocations that included the first of them (`approximateInvokeCount`).
    pub invocations: u32,
    pub function_error: bool,
}

/// One shard's records not yet checkpointed, as batches to invoke, oldest first.
#[derive(Debug)]
pub struct Shard<R> {
    settings: Settings,
    batches: VecDeque<Batch<R>>,
    /// Retries of the front batch's first record.
    retries: u32,
}

#[derive(Debug)]
struct Batch<R> {
    records: Vec<R>,
    /// Invocations that held its first record.
    invocations: u32,
}

impl<R: Clone> Shard<R> {
    pub fn new(settings: Settings) -> Self {
        Self { settings, batches: VecDeque::new(), retries: 0 }
    }

    /// Nothing read is waiting: the shard can be read further.
    pub fn is_idle(&self) -> bool {
        self.batches.is_empty()
    }

    /// Records newly read from the shard, in its order.
    pub fn push(&mut self, records: Vec<R>) {
        for chunk in records.chunks(self.settings.batch_size) {
            self.batches.push_back(Batch { records: chunk.to_vec(), invocations: 0 });
        }
    }

    /// The batch to invoke next.
    pub fn next(&self) -> Option<&[R]> {
        self.batches.front().map(|b| b.records.as_slice())
    }

    /// Takes the outcome of invoking [`Self::next`]; `id` is a record's sequence number (the item identifier
    /// of a stream record). Returns the records given up on, if this was their last retry.
    pub fn after(&mut self, outcome: &Outcome, id: impl Fn(&R) -> String) -> Option<Discarded<R>> {
        let batch = self.batches.front_mut()?;
        batch.invocations += 1;
        let function_error = *outcome == Outcome::FunctionError;
        match outcome {
            Outcome::Returned(failed) if !self.settings.report_item_failures || failed.is_empty() => {
                self.batches.pop_front();
                self.retries = 0;
                return None;
            }
            Outcome::Returned(failed) => {
                let records = &batch.records;
                let positions: Option<Vec<usize>> =
                    failed.iter().map(|f| records.iter().position(|r| !f.is_empty() && id(r) == *f)).collect();
                let checkpoint = positions.and_then(|p| p.into_iter().min()).unwrap_or(0);
                if checkpoint > 0 {
                    // The new first record was in every invocation of the batch: its count stands, its retries start.
                    batch.records.drain(..checkpoint);
                    self.retries = 0;
                }
            }
            Outcome::FunctionError if self.settings.bisect && batch.records.len() > 1 => {
                let second = batch.records.split_off(batch.records.len() / 2);
                let invocations = batch.invocations;
                self.batches.insert(1, Batch { records: second, invocations });
                return None;
            }
            Outcome::FunctionError => {}
        }
        self.retries += 1;
        if self.settings.max_retries.is_some_and(|max| self.retries > max) {
            let Batch { records, invocations } = self.batches.pop_front()?;
            self.retries = 0;
            return Some(Discarded { records, invocations, function_error });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: Settings =
        Settings { batch_size: 3, max_retries: Some(2), bisect: true, report_item_failures: true };

    fn shard(settings: Settings, n: u32) -> Shard<u32> {
        let mut s = Shard::new(settings);
        s.push((1..=n).collect());
        s
    }

    fn returned(ids: &[&str]) -> Outcome {
        Outcome::Returned(ids.iter().map(|s| (*s).to_owned()).collect())
    }

    fn id(r: &u32) -> String {
        r.to_string()
    }

    #[test]
    fn records_go_in_batches_of_the_batch_size_and_a_success_moves_on() {
        let mut s = shard(TEMPLATE, 7);
        assert_eq!(s.next(), Some(&[1, 2, 3][..]));
        assert_eq!(s.after(&returned(&[]), id), None);
        assert_eq!(s.next(), Some(&[4, 5, 6][..]));
        assert_eq!(s.after(&returned(&[]), id), None);
        assert_eq!(s.next(), Some(&[7][..]));
        assert_eq!(s.after(&returned(&[]), id), None);
        assert!(s.is_idle());
    }

    #[test]
    fn a_partial_failure_retries_from_the_lowest_failed_record() {
        let mut s = shard(TEMPLATE, 3);
        assert_eq!(s.after(&returned(&["3", "2"]), id), None);
        assert_eq!(s.next(), Some(&[2, 3][..]), "1 is checkpointed; 2 and 3 are retried");
    }

    #[test]
    fn an_identifier_naming_no_record_of_the_batch_fails_all_of_it() {
        for bad in ["", "99"] {
            let mut s = shard(TEMPLATE, 3);
            assert_eq!(s.after(&returned(&["3", bad]), id), None);
            assert_eq!(s.next(), Some(&[1, 2, 3][..]), "{bad:?}");
        }
    }

    #[test]
    fn without_report_batch_item_failures_the_answer_is_not_read() {
        let mut s = shard(Settings { report_item_failures: false, ..TEMPLATE }, 3);
        assert_eq!(s.after(&returned(&["1"]), id), None);
        assert!(s.is_idle());
    }

    #[test]
    fn a_record_that_keeps_failing_is_discarded_after_its_retries_and_the_shard_moves_on() {
        let mut s = shard(TEMPLATE, 4);
        assert_eq!(s.after(&returned(&["2"]), id), None); // 1 done; 2 fails, its first invocation
        assert_eq!(s.after(&returned(&["2"]), id), None); // its first retry fails
        let gone = s.after(&returned(&["2"]), id).expect("its second and last retry fails");
        assert_eq!(gone, Discarded { records: vec![2, 3], invocations: 3, function_error: false });
        assert_eq!(s.next(), Some(&[4][..]));
    }

    #[test]
    fn infinite_retries_never_discard() {
        let mut s = shard(Settings { max_retries: None, ..TEMPLATE }, 1);
        for _ in 0..1000 {
            assert_eq!(s.after(&Outcome::FunctionError, id), None);
        }
        assert_eq!(s.next(), Some(&[1][..]));
    }

    #[test]
    fn a_function_error_bisects_without_spending_retries_down_to_the_record_that_fails() {
        let mut s = shard(Settings { batch_size: 4, ..TEMPLATE }, 4);
        assert_eq!(s.after(&Outcome::FunctionError, id), None);
        assert_eq!(s.next(), Some(&[1, 2][..]));
        assert_eq!(s.after(&returned(&[]), id), None);
        assert_eq!(s.next(), Some(&[3, 4][..]));
        assert_eq!(s.after(&Outcome::FunctionError, id), None);
        assert_eq!(s.next(), Some(&[3][..]));
        assert_eq!(s.after(&returned(&[]), id), None);
        // 4 alone fails: the invocations of the larger batches spent none of its retries.
        assert_eq!(s.after(&Outcome::FunctionError, id), None, "its first invocation alone");
        assert_eq!(s.after(&Outcome::FunctionError, id), None, "its first retry");
        let gone = s.after(&Outcome::FunctionError, id).expect("its second and last retry");
        // It was held by five invocations: [1..4], [3, 4], and three alone.
        assert_eq!(gone, Discarded { records: vec![4], invocations: 5, function_error: true });
        assert!(s.is_idle());
    }

    #[test]
    fn without_bisect_a_function_error_retries_the_whole_batch() {
        let mut s = shard(Settings { bisect: false, ..TEMPLATE }, 3);
        assert_eq!(s.after(&Outcome::FunctionError, id), None);
        assert_eq!(s.next(), Some(&[1, 2, 3][..]));
    }
}
