//! The live display of a running pipeline: one line per step on stderr.

use crate::engine::{Plan, ProgressEvent, report_path};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

/// A running display; [`Progress::finish`] waits for it to draw the last events.
pub(crate) struct Progress {
    task: JoinHandle<()>,
}

impl Progress {
    /// Starts drawing events for the steps of `plan`; with `visible` false it only drains them.
    pub(crate) fn start(
        run_id: &str,
        plan: &Plan,
        mut events: UnboundedReceiver<ProgressEvent>,
        visible: bool,
    ) -> Self {
        let multi = MultiProgress::with_draw_target(if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        if visible {
            eprintln!(
                "run {run_id}: {} ({} steps)",
                plan.definition.name,
                plan.steps.len()
            );
        }
        let style = ProgressStyle::with_template("  {spinner} {prefix:<16} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bars: BTreeMap<String, ProgressBar> = plan
            .steps
            .iter()
            .map(|step| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(step.name.clone());
                bar.set_message("pending");
                (step.name.clone(), bar)
            })
            .collect();
        let task = tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                apply(&multi, &bars, event);
            }
            for bar in bars.values() {
                if !bar.is_finished() {
                    bar.finish();
                }
            }
        });
        Self { task }
    }

    /// Waits until every event has been drawn.
    pub(crate) async fn finish(self) {
        let _ = self.task.await;
    }
}

fn apply(multi: &MultiProgress, bars: &BTreeMap<String, ProgressBar>, event: ProgressEvent) {
    match event {
        ProgressEvent::StepStarted { step, attempt } => {
            if let Some(bar) = bars.get(&step) {
                bar.enable_steady_tick(Duration::from_millis(120));
                let suffix = if attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                bar.set_message(format!("running{suffix}"));
            }
        }
        ProgressEvent::StepRetrying {
            step,
            attempt,
            delay,
            error,
        } => {
            if let Some(bar) = bars.get(&step) {
                bar.set_message(format!(
                    "attempt {attempt} failed, retrying in {delay:?}: {error}"
                ));
            }
        }
        ProgressEvent::StepWaiting {
            step,
            step_run_id,
            token,
        } => {
            if let Some(bar) = bars.get(&step) {
                bar.enable_steady_tick(Duration::from_millis(120));
                bar.set_message("waiting for an external report");
            }
            // Printed even when the display is hidden (`--json`, or stderr not a terminal),
            // because the client needs the token to report the step.
            let credential = match &token {
                Some(token) => format!("token {}", token.expose()),
                None => "the step token issued when the run was created".to_owned(),
            };
            multi.suspend(|| {
                eprintln!(
                    "step {step} waits for an external report: POST {} with {credential}",
                    report_path(&step_run_id)
                );
            });
        }
        ProgressEvent::StepFinished(summary) => {
            if let Some(bar) = bars.get(&summary.name) {
                let note = summary
                    .error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                bar.finish_with_message(format!(
                    "{} in {} ms{note}",
                    summary.status, summary.duration_ms
                ));
            }
        }
    }
}
