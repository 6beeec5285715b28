use super::{digest, new_run, on_each_backend};
use crate::store::{NewEdge, Node, Store, TraverseDirection};
use std::collections::BTreeSet;

fn ids(nodes: &[Node]) -> BTreeSet<String> {
    nodes.iter().map(|node| node.id.clone()).collect()
}

#[tokio::test]
async fn lineage_traverses_diamond_with_depth() {
    on_each_backend(async |store: &Store| {
        // dataset -> split -> {train, test} -> fit -> model: a diamond between split and fit.
        let run = store.create_run(new_run("lineage")).await.unwrap();
        let dataset = Node::dataset(digest('d'));
        let split = Node::step_run("split");
        let train = Node::artifact(digest('1'));
        let test = Node::artifact(digest('2'));
        let fit = Node::step_run("fit");
        let model = Node::artifact(digest('3'));
        let edge = |source: &Node, target: &Node| NewEdge {
            run_id: run.id.clone(),
            source: source.clone(),
            target: target.clone(),
        };
        let edges = [
            edge(&dataset, &split),
            edge(&split, &train),
            edge(&split, &test),
            edge(&train, &fit),
            edge(&test, &fit),
            edge(&fit, &model),
        ];
        store.add_edges(&edges).await.unwrap();
        store
            .add_edges(&edges[..2])
            .await
            .expect("recording edges again is skipped");

        let walk = async |start: &Node, direction, depth| {
            store
                .traverse(start.clone(), direction, depth)
                .await
                .unwrap()
        };
        use TraverseDirection::{Downstream, Upstream};

        let everything = walk(&dataset, Downstream, None).await;
        assert_eq!(everything.nodes.len(), 6);
        assert_eq!(everything.edges.len(), 6, "each edge once");
        assert_eq!(everything.nodes[0], dataset, "the start comes first");
        assert_eq!(
            everything.nodes[5], model,
            "breadth first ends at the model"
        );

        let depth_two = walk(&dataset, Downstream, Some(2)).await;
        let expected = ids(&[dataset.clone(), split.clone(), train.clone(), test.clone()]);
        assert_eq!(ids(&depth_two.nodes), expected);
        assert_eq!(depth_two.edges.len(), 3);

        let upstream = walk(&model, Upstream, None).await;
        assert_eq!(upstream.nodes.len(), 6);
        assert_eq!(upstream.nodes.last(), Some(&dataset));

        let depth_one = walk(&model, Upstream, Some(1)).await;
        assert_eq!(ids(&depth_one.nodes), ids(&[model.clone(), fit.clone()]));

        let depth_three = walk(&model, Upstream, Some(3)).await;
        assert!(!ids(&depth_three.nodes).contains(&dataset.id));
        assert!(ids(&depth_three.nodes).contains("split"));

        let depth_zero = walk(&model, Downstream, Some(0)).await;
        assert_eq!(depth_zero.nodes.len(), 1);
        assert_eq!(depth_zero.nodes[0], model);
        assert!(depth_zero.edges.is_empty());
    })
    .await;
}

#[tokio::test]
async fn datasets_keep_first_record() {
    on_each_backend(async |store: &Store| {
        let first = store
            .record_dataset(&digest('9'), "iris", "file:///data/iris.csv")
            .await
            .unwrap();
        let again = store
            .record_dataset(&digest('9'), "iris-copy", "s3://bucket/iris.csv")
            .await
            .unwrap();

        assert_eq!(again, first);
        assert!(store.record_dataset("nope", "x", "y").await.is_err());
    })
    .await;
}
