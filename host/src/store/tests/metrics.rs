use super::{new_run, on_each_backend};
use crate::store::{MetricPoint, NewMetric, Store, StoreError};

fn value(key: &str, value: f64, step: i64, timestamp_ms: i64) -> NewMetric {
    NewMetric {
        step_run_id: None,
        key: key.to_owned(),
        value,
        step,
        timestamp_ms,
    }
}

fn latest<'a>(points: &'a [MetricPoint], key: &str) -> &'a MetricPoint {
    points
        .iter()
        .find(|p| p.key == key)
        .unwrap_or_else(|| panic!("no latest value for `{key}` in {points:?}"))
}

#[tokio::test]
async fn metrics_round_trip_nan_and_infinity() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("special")).await.unwrap();
        let specials = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 1.5e300];
        let values: Vec<_> = specials
            .iter()
            .enumerate()
            .map(|(step, v)| value("loss", *v, step as i64, 1_000))
            .collect();

        store.log_metrics(&run.id, &values).await.unwrap();

        let history = store.metric_history(&run.id, "loss").await.unwrap();
        assert_eq!(history.len(), specials.len());
        assert!(
            history[0].value.is_nan(),
            "NaN came back as {}",
            history[0].value
        );
        assert_eq!(history[1].value, f64::INFINITY);
        assert_eq!(history[2].value, f64::NEG_INFINITY);
        assert_eq!(history[3].value, 0.0);
        assert_eq!(history[4].value, 1.5e300);

        store
            .log_metrics(&run.id, &[value("score", f64::NAN, 0, 1)])
            .await
            .unwrap();
        let latest_values = store.latest_metrics(&run.id).await.unwrap();
        assert_eq!(latest(&latest_values, "loss").value, 1.5e300);
        assert!(latest(&latest_values, "score").value.is_nan());
    })
    .await;
}

#[tokio::test]
async fn latest_metric_survives_out_of_order_inserts() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("order")).await.unwrap();
        let log = async |values: &[NewMetric]| store.log_metrics(&run.id, values).await.unwrap();

        log(&[value("acc", 0.9, 10, 5_000)]).await;
        log(&[value("acc", 0.5, 3, 9_000)]).await;
        let after_lower_step = store.latest_metrics(&run.id).await.unwrap();
        assert_eq!(
            latest(&after_lower_step, "acc").value,
            0.9,
            "a lower step never wins"
        );

        log(&[value("acc", 0.7, 10, 4_000)]).await;
        let after_older = store.latest_metrics(&run.id).await.unwrap();
        assert_eq!(
            latest(&after_older, "acc").value,
            0.9,
            "an older timestamp loses a tie"
        );

        log(&[value("acc", 0.95, 10, 6_000)]).await;
        let after_newer = store.latest_metrics(&run.id).await.unwrap();
        assert_eq!(
            latest(&after_newer, "acc").value,
            0.95,
            "a newer timestamp wins a tie"
        );

        // Within one batch the order of arrival does not matter either.
        log(&[
            value("f1", 0.3, 20, 1_000),
            value("f1", 0.1, 5, 2_000),
            value("f1", 0.2, 20, 900),
        ])
        .await;
        let batch = store.latest_metrics(&run.id).await.unwrap();
        let f1 = latest(&batch, "f1");
        assert_eq!((f1.value, f1.step, f1.timestamp_ms), (0.3, 20, 1_000));

        let history = store.metric_history(&run.id, "acc").await.unwrap();
        let steps: Vec<i64> = history.iter().map(|p| p.step).collect();
        assert_eq!(steps, [3, 10, 10, 10], "history is ordered by step");
    })
    .await;
}

#[tokio::test]
async fn metric_batches_span_several_statements() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("bulk")).await.unwrap();
        let count = 12_000;
        let values: Vec<_> = (0..count)
            .map(|step| value("loss", 1.0 / (step as f64 + 1.0), step, step))
            .collect();

        store.log_metrics(&run.id, &values).await.unwrap();

        let history = store.metric_history(&run.id, "loss").await.unwrap();
        assert_eq!(history.len(), count as usize);
        let latest_values = store.latest_metrics(&run.id).await.unwrap();
        assert_eq!(latest(&latest_values, "loss").step, count - 1);
    })
    .await;
}

#[tokio::test]
async fn step_metrics_require_step_of_run() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("owner")).await.unwrap();
        let other = store.create_run(new_run("other")).await.unwrap();
        let step = store
            .create_step_run(super::steps::new_step(&other.id, "train", None))
            .await
            .unwrap();
        let mut metric = value("wall_time_ms", 12.0, 0, 0);
        metric.step_run_id = Some(step.id.clone());

        let error = store
            .log_metrics(&run.id, &[metric.clone()])
            .await
            .unwrap_err();
        assert!(
            matches!(error, StoreError::StepRunNotInRun { .. }),
            "{error}"
        );

        store.log_metrics(&other.id, &[metric]).await.unwrap();
        let history = store
            .metric_history(&other.id, "wall_time_ms")
            .await
            .unwrap();
        assert_eq!(history[0].step_run_id.as_deref(), Some(step.id.as_str()));
    })
    .await;
}
