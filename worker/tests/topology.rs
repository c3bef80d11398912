//! Declaring the topology against what already exists: the services never redeclare a queue
//! destructively, and an existing queue with other arguments (created by an older version
//! without `x-quorum-initial-group-size`, or by a process with another node list) does not stop
//! a process from connecting.

use std::time::Duration;

use shared::amqp::{Connector, Nodes, Topology};
use testkit::{broker, env::amqp_url, TestEnv};

async fn connect() -> lapin::Connection {
    let nodes = Nodes::parse(&amqp_url()).expect("AMQP_URL");
    Connector::new(nodes, "test-topology", Duration::from_secs(10))
        .connect()
        .await
        .expect("connect")
        .connection
}

#[tokio::test]
async fn an_existing_queue_with_other_arguments_is_used_as_it_is() {
    let env = TestEnv::new();
    // An older version created the queues without a group size, with a message in them.
    let older = Topology::new(&env.amqp_prefix);
    broker::publish_raw(&env.amqp_prefix, b"kept").await;
    assert_eq!(broker::ready_messages(&older.queue).await, 1);

    // This version asks for a group size: the broker refuses that redeclaration, the process
    // uses the queue as it is, and nothing in it is lost.
    let connection = connect().await;
    let newer = Topology::new(&env.amqp_prefix).with_quorum_group_size(1);
    newer
        .ensure(&connection)
        .await
        .expect("an existing queue with other arguments is accepted");
    newer.ensure(&connection).await.expect("and again");
    assert_eq!(
        broker::ready_messages(&older.queue).await,
        1,
        "nothing was lost"
    );
    let _ = connection.close(200, "done".into()).await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_missing_queue_is_created_with_the_group_size() {
    let env = TestEnv::new();
    let topology = Topology::new(&env.amqp_prefix).with_quorum_group_size(1);
    let connection = connect().await;
    topology.ensure(&connection).await.expect("created");
    // Declaring the same again is accepted (identical arguments), so the size was applied.
    let channel = connection.create_channel().await.expect("channel");
    topology
        .declare(&channel)
        .await
        .expect("the queue carries x-quorum-initial-group-size = 1");
    // And a declaration without the size is refused: the argument really is on the queue.
    let channel = connection.create_channel().await.expect("channel");
    let refused = Topology::new(&env.amqp_prefix).declare(&channel).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(shared::amqp::is_precondition_failed),
        "{refused:?}"
    );
    let _ = connection.close(200, "done".into()).await;
    env.cleanup().await;
}
