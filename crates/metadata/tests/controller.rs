//! The controller's decisions, from requests and time to record batches, applied to an image as the log would.

use strom_metadata::{
    codes, Controller, ControllerConfig, ControllerReply, ControllerRequest, Decision, Endpoint,
    MetadataImage, RecordBatch,
};

struct Cluster {
    image: MetadataImage,
    controller: Controller,
    index: u64,
}

impl Cluster {
    /// Brokers 0..n registered and unfenced, with the given racks.
    fn new(racks: &[Option<&str>]) -> Self {
        Self::with_config(ControllerConfig::default(), racks)
    }

    fn with_config(config: ControllerConfig, racks: &[Option<&str>]) -> Self {
        let image = MetadataImage::default();
        let controller = Controller::new(config, &image, 0);
        let mut cluster = Self {
            image,
            controller,
            index: 0,
        };
        for (id, rack) in racks.iter().enumerate() {
            cluster.register(id as i32, rack.map(String::from));
            let epoch = cluster.image.brokers[&(id as i32)].broker_epoch;
            cluster.heartbeat(id as i32, epoch, 0).unwrap();
        }
        cluster
    }

    fn commit(&mut self, batch: &RecordBatch) {
        self.index += 1;
        self.image.apply_batch(self.index, batch).expect("applies");
    }

    fn request(&mut self, now: u64, request: ControllerRequest) -> Result<ControllerReply, i16> {
        match self.controller.handle(now, &self.image, request) {
            Ok(Decision::Propose(batch, reply)) => {
                self.commit(&batch);
                Ok(reply)
            }
            Ok(Decision::Reply(reply)) => Ok(reply),
            Err(e) => Err(e.code),
        }
    }

    fn register(&mut self, id: i32, rack: Option<String>) {
        self.request(
            0,
            ControllerRequest::RegisterBroker {
                broker_id: id,
                incarnation_id: format!("inc-{id}-{}", self.index),
                endpoint: Endpoint {
                    host: "127.0.0.1".into(),
                    port: 9092 + id as u16,
                },
                rack,
                clean_shutdown: true,
            },
        )
        .unwrap();
    }

    fn heartbeat(&mut self, id: i32, epoch: u64, now: u64) -> Result<ControllerReply, i16> {
        self.request(
            now,
            ControllerRequest::Heartbeat {
                broker_id: id,
                broker_epoch: epoch,
                applied_index: self.index,
                want_shutdown: false,
            },
        )
    }

    fn create(&mut self, name: &str, partitions: i32, rf: i16) -> Result<ControllerReply, i16> {
        self.request(
            0,
            ControllerRequest::CreateTopic {
                name: name.into(),
                topic_id: format!("id-{name}"),
                partitions,
                replication_factor: rf,
                assignments: None,
                configs: Default::default(),
                validate_only: false,
            },
        )
    }

    fn leaders(&self, topic: &str) -> Vec<i32> {
        self.image.topics[topic]
            .partitions
            .values()
            .map(|p| p.leader)
            .collect()
    }
}

#[test]
fn a_broker_registers_fenced_and_is_unfenced_once_caught_up() {
    let mut c = Cluster::new(&[]);
    c.register(7, None);
    let epoch = c.image.brokers[&7].broker_epoch;
    assert!(c.image.brokers[&7].fenced);
    let behind = c.request(
        0,
        ControllerRequest::Heartbeat {
            broker_id: 7,
            broker_epoch: epoch,
            applied_index: epoch - 1,
            want_shutdown: false,
        },
    );
    assert_eq!(
        behind,
        Ok(ControllerReply::Heartbeat {
            fenced: true,
            shutdown_ready: false
        })
    );
    assert_eq!(
        c.heartbeat(7, epoch, 0),
        Ok(ControllerReply::Heartbeat {
            fenced: false,
            shutdown_ready: false
        })
    );
    assert!(!c.image.brokers[&7].fenced);
    assert_eq!(
        c.heartbeat(7, epoch + 100, 0),
        Err(codes::STALE_BROKER_EPOCH)
    );
}

#[test]
fn partitions_and_their_replicas_spread_over_every_broker() {
    let mut c = Cluster::new(&[None, None, None]);
    c.create("orders", 6, 3).unwrap();
    let topic = &c.image.topics["orders"];
    let mut led = [0; 3];
    let mut hosted = [0; 3];
    for p in topic.partitions.values() {
        assert_eq!(p.replicas.len(), 3);
        let mut distinct = p.replicas.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 3, "{:?}", p.replicas);
        assert_eq!(p.leader, p.replicas[0]);
        assert_eq!(p.isr, vec![p.leader]);
        led[p.leader as usize] += 1;
        for r in &p.replicas {
            hosted[*r as usize] += 1;
        }
    }
    assert_eq!(led, [2, 2, 2]);
    assert_eq!(hosted, [6, 6, 6]);
}

#[test]
fn replicas_of_a_partition_sit_on_different_racks_where_racks_allow() {
    let mut c = Cluster::new(&[Some("a"), Some("a"), Some("b"), Some("b")]);
    c.create("t", 8, 2).unwrap();
    let rack = |b: i32| c.image.brokers[&b].rack.clone();
    for p in c.image.topics["t"].partitions.values() {
        assert_ne!(rack(p.replicas[0]), rack(p.replicas[1]), "{:?}", p.replicas);
    }
}

#[test]
fn create_topic_checks_replication_factor_partitions_and_names() {
    let mut c = Cluster::new(&[None, None]);
    assert_eq!(c.create("t", 1, 3), Err(codes::INVALID_REPLICATION_FACTOR));
    assert_eq!(c.create("t", 0, 1), Err(codes::INVALID_PARTITIONS));
    assert!(c.image.topics.is_empty(), "nothing half-applied");
    c.create("t", 1, 2).unwrap();
    assert_eq!(c.create("t", 1, 1), Err(codes::TOPIC_ALREADY_EXISTS));
    // -1 means the defaults (1 partition, replication factor 1).
    c.create("d", -1, -1).unwrap();
    assert_eq!(c.image.topics["d"].partitions[&0].replicas.len(), 1);
}

#[test]
fn a_silent_broker_is_fenced_after_its_session_and_its_partitions_go_offline_until_it_returns() {
    let mut c = Cluster::new(&[None, None]);
    c.create("t", 4, 1).unwrap();
    let epoch0 = c.image.brokers[&0].broker_epoch;
    let epoch1 = c.image.brokers[&1].broker_epoch;
    // Broker 0 keeps heartbeating; broker 1 goes silent.
    for now in (0..=9_000).step_by(1_000) {
        c.heartbeat(0, epoch0, now).unwrap();
        for batch in c.controller.tick(now, &c.image) {
            c.commit(&batch);
        }
    }
    assert!(c.image.brokers[&1].fenced);
    assert!(!c.image.brokers[&0].fenced);
    let leaders = c.leaders("t");
    assert!(
        leaders.contains(&-1) && !leaders.contains(&1),
        "{leaders:?}"
    );
    // A fence is proposed once, not every tick while it commits.
    assert!(c.controller.tick(9_500, &c.image).is_empty());
    // Broker 1 comes back: unfenced, and leads its partitions again.
    c.heartbeat(1, epoch1, 10_000).unwrap();
    assert!(!c.image.brokers[&1].fenced);
    assert!(!c.leaders("t").contains(&-1));
}

#[test]
fn controlled_shutdown_fences_first_and_says_when_ready() {
    let mut c = Cluster::new(&[None, None]);
    c.create("t", 2, 1).unwrap();
    let epoch = c.image.brokers[&1].broker_epoch;
    let reply = c.request(
        0,
        ControllerRequest::Heartbeat {
            broker_id: 1,
            broker_epoch: epoch,
            applied_index: c.index,
            want_shutdown: true,
        },
    );
    assert_eq!(
        reply,
        Ok(ControllerReply::Heartbeat {
            fenced: true,
            shutdown_ready: true
        })
    );
    assert!(c.image.brokers[&1].fenced);
    assert!(!c.leaders("t").contains(&1));
}

#[test]
fn producer_id_blocks_never_overlap_even_before_they_commit() {
    let mut c = Cluster::new(&[None]);
    let image = c.image.clone();
    let a = c.controller.handle(
        0,
        &image,
        ControllerRequest::AllocateProducerIds {
            broker_id: 0,
            count: 1000,
        },
    );
    let b = c.controller.handle(
        0,
        &image,
        ControllerRequest::AllocateProducerIds {
            broker_id: 0,
            count: 1000,
        },
    );
    let first = |d: Result<Decision, _>| match d {
        Ok(Decision::Propose(_, ControllerReply::ProducerIds { first, .. })) => first,
        other => panic!("{other:?}"),
    };
    assert_eq!((first(a), first(b)), (0, 1000));
}

#[test]
fn alter_configs_replaces_and_incremental_alter_configs_edits() {
    let mut c = Cluster::new(&[None]);
    c.create("t", 1, 1).unwrap();
    let alter =
        |set: &[(&str, &str)], remove: &[&str], replace| ControllerRequest::AlterTopicConfigs {
            name: "t".into(),
            set: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            remove: remove.iter().map(|k| k.to_string()).collect(),
            replace,
            validate_only: false,
        };
    c.request(
        0,
        alter(&[("retention.ms", "1"), ("segment.ms", "2")], &[], false),
    )
    .unwrap();
    c.request(0, alter(&[], &["segment.ms"], false)).unwrap();
    assert_eq!(
        c.image.topics["t"].configs.keys().collect::<Vec<_>>(),
        ["retention.ms"]
    );
    c.request(0, alter(&[("cleanup.policy", "compact")], &[], true))
        .unwrap();
    assert_eq!(
        c.image.topics["t"].configs.keys().collect::<Vec<_>>(),
        ["cleanup.policy"]
    );
    assert_eq!(
        c.request(
            0,
            ControllerRequest::DeleteTopic {
                name: "nope".into()
            }
        ),
        Err(codes::UNKNOWN_TOPIC_OR_PARTITION)
    );
}

#[test]
fn a_second_live_broker_with_the_same_id_is_refused_until_the_first_one_s_session_expires() {
    let mut c = Cluster::new(&[None, None]);
    let register = |c: &mut Cluster, now, incarnation: &str| {
        c.request(
            now,
            ControllerRequest::RegisterBroker {
                broker_id: 1,
                incarnation_id: incarnation.into(),
                endpoint: Endpoint {
                    host: "127.0.0.1".into(),
                    port: 9999,
                },
                rack: None,
                clean_shutdown: true,
            },
        )
    };
    let epoch = c.image.brokers[&1].broker_epoch;
    c.heartbeat(1, epoch, 1_000).unwrap();
    assert_eq!(
        register(&mut c, 2_000, "impostor"),
        Err(codes::DUPLICATE_BROKER_REGISTRATION)
    );
    // The first one stops heartbeating (it crashed); its restart gets in once the session has expired.
    assert_eq!(
        register(&mut c, 10_001, "restarted"),
        Ok(ControllerReply::Registered)
    );
    // A controller that only inherited the registration (a new leader, or a single node restarting) has heard
    // nothing from it, and lets the restarted broker in at once.
    let mut fresh = Controller::new(ControllerConfig::default(), &c.image, 20_000);
    let decision = fresh.handle(
        20_001,
        &c.image,
        ControllerRequest::RegisterBroker {
            broker_id: 1,
            incarnation_id: "again".into(),
            endpoint: Endpoint {
                host: "h".into(),
                port: 1,
            },
            rack: None,
            clean_shutdown: true,
        },
    );
    assert!(
        matches!(decision, Ok(Decision::Propose(..))),
        "{decision:?}"
    );
}

#[test]
fn a_broker_that_asked_to_shut_down_is_not_unfenced_by_a_later_ordinary_heartbeat() {
    let mut c = Cluster::new(&[None, None]);
    let epoch = c.image.brokers[&1].broker_epoch;
    let shutdown = ControllerRequest::Heartbeat {
        broker_id: 1,
        broker_epoch: epoch,
        applied_index: c.index,
        want_shutdown: true,
    };
    c.request(0, shutdown).unwrap();
    assert!(c.image.brokers[&1].fenced);
    // A heartbeat already on its way when shutdown began.
    assert_eq!(
        c.heartbeat(1, epoch, 10),
        Ok(ControllerReply::Heartbeat {
            fenced: true,
            shutdown_ready: false
        })
    );
    assert!(c.image.brokers[&1].fenced);
}

impl Cluster {
    fn create_assigned(&mut self, name: &str, assignments: Vec<Vec<i32>>) {
        self.request(
            0,
            ControllerRequest::CreateTopic {
                name: name.into(),
                topic_id: format!("id-{name}"),
                partitions: -1,
                replication_factor: -1,
                assignments: Some(assignments),
                configs: Default::default(),
                validate_only: false,
            },
        )
        .unwrap();
    }

    fn partition(&self, topic: &str, index: i32) -> strom_metadata::PartitionImage {
        self.image.topics[topic].partitions[&index].clone()
    }

    /// The partition's leader asks for `isr`, at the epochs it knows.
    fn alter_isr(
        &mut self,
        topic: &str,
        index: i32,
        isr: Vec<i32>,
    ) -> Result<ControllerReply, i16> {
        let p = self.partition(topic, index);
        self.request(
            0,
            ControllerRequest::AlterPartition {
                broker_id: p.leader,
                topic_id: format!("id-{topic}"),
                partition: index,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                isr,
            },
        )
    }

    /// Reassigns one partition; the per-partition outcome (0 when accepted).
    fn reassign(
        &mut self,
        topic: &str,
        index: i32,
        target: Option<Vec<i32>>,
        allow_rf: bool,
    ) -> i16 {
        match self.request(
            0,
            ControllerRequest::AlterReassignments {
                partitions: vec![(topic.into(), index, target)],
                allow_replication_factor_change: allow_rf,
            },
        ) {
            Ok(ControllerReply::Reassignments(results)) => {
                results[0].1.as_ref().map_or(0, |e| e.code)
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
}

#[test]
fn a_reassignment_adds_followers_first_and_switches_once_they_are_in_sync() {
    let mut c = Cluster::new(&[None, None, None, None]);
    c.create_assigned("t", vec![vec![0, 1]]);
    c.alter_isr("t", 0, vec![0, 1]).unwrap();

    assert_eq!(c.reassign("t", 0, Some(vec![2, 3]), true), 0);
    let p = c.partition("t", 0);
    assert_eq!(
        p.replicas,
        vec![2, 3, 0, 1],
        "target first, then the leaving replicas"
    );
    assert_eq!(
        (p.adding_replicas.clone(), p.removing_replicas.clone()),
        (vec![2, 3], vec![0, 1])
    );
    assert_eq!(
        (p.leader, p.isr.clone()),
        (0, vec![0, 1]),
        "nothing moves before the copies exist"
    );

    // One new replica in sync: not yet.
    c.alter_isr("t", 0, vec![0, 1, 2]).unwrap();
    assert!(c.partition("t", 0).is_reassigning());
    // Both: the reassignment completes with that ISR change, and leadership leaves the old replicas.
    c.alter_isr("t", 0, vec![0, 1, 2, 3]).unwrap();
    let p = c.partition("t", 0);
    assert!(!p.is_reassigning());
    assert_eq!(p.replicas, vec![2, 3]);
    assert_eq!(p.isr, vec![2, 3]);
    assert_eq!(p.leader, 2, "the first in-sync target replica leads");
    assert_eq!(p.leader_epoch, 1);
}

#[test]
fn removing_replicas_only_completes_at_once_and_moves_a_leaving_leader() {
    let mut c = Cluster::new(&[None, None, None]);
    c.create_assigned("t", vec![vec![0, 1, 2]]);
    c.alter_isr("t", 0, vec![0, 1, 2]).unwrap();
    assert_eq!(
        c.reassign("t", 0, Some(vec![1, 2]), false),
        codes::INVALID_REPLICATION_FACTOR,
        "KIP-860: a smaller replication factor only when allowed"
    );
    assert_eq!(c.reassign("t", 0, Some(vec![1, 2]), true), 0);
    let p = c.partition("t", 0);
    assert!(!p.is_reassigning());
    assert_eq!(
        (p.replicas.clone(), p.isr.clone(), p.leader),
        (vec![1, 2], vec![1, 2], 1)
    );
}

#[test]
fn a_cancelled_reassignment_goes_back_to_the_replicas_from_before() {
    let mut c = Cluster::new(&[None, None, None]);
    c.create_assigned("t", vec![vec![0, 1]]);
    c.alter_isr("t", 0, vec![0, 1]).unwrap();
    assert_eq!(c.reassign("t", 0, Some(vec![0, 2]), false), 0);
    assert!(c.partition("t", 0).is_reassigning());

    assert_eq!(c.reassign("t", 0, None, false), 0);
    let p = c.partition("t", 0);
    assert!(!p.is_reassigning());
    assert_eq!(
        (p.replicas.clone(), p.isr.clone(), p.leader),
        (vec![0, 1], vec![0, 1], 0)
    );
    assert_eq!(
        c.reassign("t", 0, None, false),
        codes::NO_REASSIGNMENT_IN_PROGRESS
    );
}

#[test]
fn a_reassignment_can_change_its_target_while_it_runs() {
    let mut c = Cluster::new(&[None, None, None, None]);
    c.create_assigned("t", vec![vec![0, 1]]);
    c.alter_isr("t", 0, vec![0, 1]).unwrap();
    assert_eq!(c.reassign("t", 0, Some(vec![0, 2]), false), 0);
    // Replaced before broker 2 caught up: the original replicas are still [0, 1].
    assert_eq!(c.reassign("t", 0, Some(vec![0, 3]), false), 0);
    let p = c.partition("t", 0);
    assert_eq!(p.replicas, vec![0, 3, 1]);
    assert_eq!(
        (p.adding_replicas.clone(), p.removing_replicas.clone()),
        (vec![3], vec![1])
    );
    c.alter_isr("t", 0, vec![0, 1, 3]).unwrap();
    let p = c.partition("t", 0);
    assert_eq!(
        (p.replicas.clone(), p.isr.clone(), p.leader),
        (vec![0, 3], vec![0, 3], 0)
    );
}

#[test]
fn invalid_reassignments_are_refused_and_change_nothing() {
    let mut c = Cluster::new(&[None, None, None]);
    c.create_assigned("t", vec![vec![0, 1]]);
    let before = c.image.clone();
    assert_eq!(
        c.reassign("t", 5, Some(vec![0, 1]), true),
        codes::UNKNOWN_TOPIC_OR_PARTITION
    );
    assert_eq!(
        c.reassign("nope", 0, Some(vec![0, 1]), true),
        codes::UNKNOWN_TOPIC_OR_PARTITION
    );
    assert_eq!(
        c.reassign("t", 0, Some(vec![]), true),
        codes::INVALID_REPLICA_ASSIGNMENT
    );
    assert_eq!(
        c.reassign("t", 0, Some(vec![1, 1]), true),
        codes::INVALID_REPLICA_ASSIGNMENT
    );
    assert_eq!(
        c.reassign("t", 0, Some(vec![0, 9]), true),
        codes::INVALID_REPLICA_ASSIGNMENT
    );
    assert_eq!(c.image, before);
}

/// Three brokers, `min.insync.replicas=2`, topic `t` with one partition on all three, the ISR whole.
fn three_with_min_isr_2() -> Cluster {
    let config = ControllerConfig {
        min_insync_replicas: 2,
        ..ControllerConfig::default()
    };
    let mut c = Cluster::with_config(config, &[None, None, None]);
    c.create_assigned("t", vec![vec![0, 1, 2]]);
    c.alter_isr("t", 0, vec![0, 1, 2]).unwrap();
    c
}

/// Time passes to `now`: `alive` heartbeat, the controller fences whoever did not.
fn advance(c: &mut Cluster, now: u64, alive: &[i32]) {
    for id in alive {
        let epoch = c.image.brokers[id].broker_epoch;
        c.heartbeat(*id, epoch, now).unwrap();
    }
    loop {
        let batches = c.controller.tick(now, &c.image);
        if batches.is_empty() {
            break;
        }
        for batch in batches {
            c.commit(&batch);
        }
    }
}

#[test]
fn replicas_leaving_an_isr_below_min_insync_replicas_become_eligible_leader_replicas() {
    let mut c = three_with_min_isr_2();
    c.alter_isr("t", 0, vec![0, 1]).unwrap();
    assert_eq!(
        c.partition("t", 0).elr,
        Vec::<i32>::new(),
        "still 2 in sync"
    );
    c.alter_isr("t", 0, vec![0]).unwrap();
    assert_eq!(c.partition("t", 0).elr, vec![1], "left an ISR below 2");
    c.alter_isr("t", 0, vec![0, 2]).unwrap();
    assert_eq!(
        c.partition("t", 0).elr,
        Vec::<i32>::new(),
        "back at 2 in sync, the high watermark moves again without them"
    );
}

#[test]
fn when_the_last_in_sync_replica_dies_a_live_eligible_replica_leads() {
    let mut c = three_with_min_isr_2();
    c.alter_isr("t", 0, vec![0, 1]).unwrap();
    c.alter_isr("t", 0, vec![0]).unwrap();
    let before = c.partition("t", 0);
    assert_eq!((before.leader, before.elr.clone()), (0, vec![1]));
    // Broker 0, the last in-sync replica, goes silent; 1 and 2 heartbeat.
    advance(&mut c, 5_000, &[0, 1, 2]);
    advance(&mut c, 14_500, &[1, 2]);
    assert!(c.image.brokers[&0].fenced);
    let p = c.partition("t", 0);
    assert_eq!(
        p.leader, 1,
        "the eligible replica leads: it has every committed record"
    );
    assert_eq!(p.isr, vec![1]);
    assert_eq!(
        p.elr,
        vec![0],
        "the old leader left an ISR below 2 and holds every committed record"
    );
    assert_eq!(p.leader_epoch, before.leader_epoch + 1);
    // Broker 2 was never eligible: it left the ISR while two others were in it, and may lack later records.
    assert!(!p.elr.contains(&2));
}

#[test]
fn an_unclean_restart_takes_a_broker_out_of_the_eligible_replicas() {
    let mut c = three_with_min_isr_2();
    c.alter_isr("t", 0, vec![0, 1]).unwrap();
    c.alter_isr("t", 0, vec![0]).unwrap();
    assert_eq!(c.partition("t", 0).elr, vec![1]);
    let register = |c: &mut Cluster, clean_shutdown: bool| {
        c.request(
            20_000,
            ControllerRequest::RegisterBroker {
                broker_id: 1,
                incarnation_id: format!("again-{clean_shutdown}"),
                endpoint: Endpoint {
                    host: "127.0.0.1".into(),
                    port: 9093,
                },
                rack: None,
                clean_shutdown,
            },
        )
        .unwrap()
    };
    register(&mut c, true);
    assert_eq!(
        c.partition("t", 0).elr,
        vec![1],
        "a clean restart keeps its data"
    );
    register(&mut c, false);
    assert_eq!(
        c.partition("t", 0).elr,
        Vec::<i32>::new(),
        "after an unclean one it may have lost unflushed records"
    );
}

#[test]
fn without_a_live_eligible_replica_the_partition_waits_and_the_first_to_return_leads() {
    let mut c = three_with_min_isr_2();
    c.alter_isr("t", 0, vec![0, 1]).unwrap();
    c.alter_isr("t", 0, vec![0]).unwrap();
    // Broker 1 (eligible) goes silent first, then broker 0 (the last in-sync replica).
    advance(&mut c, 5_000, &[0, 1, 2]);
    advance(&mut c, 14_500, &[0, 2]);
    assert!(c.image.brokers[&1].fenced);
    assert_eq!(
        c.partition("t", 0).elr,
        vec![1],
        "a fenced eligible replica stays eligible"
    );
    advance(&mut c, 24_000, &[2]);
    let p = c.partition("t", 0);
    assert_eq!(
        (p.leader, p.isr.clone()),
        (-1, vec![0]),
        "offline: no live replica is known to hold everything"
    );
    // Broker 1 returns (its heartbeat unfences it): it leads, without waiting for broker 0.
    let epoch = c.image.brokers[&1].broker_epoch;
    c.heartbeat(1, epoch, 25_000).unwrap();
    let p = c.partition("t", 0);
    assert_eq!((p.leader, p.isr.clone()), (1, vec![1]));
    assert!(p.elr.is_empty());
}

fn set_topic_config(c: &mut Cluster, now: u64, key: &str, value: &str) {
    c.request(
        now,
        ControllerRequest::AlterTopicConfigs {
            name: "t".into(),
            set: [(key.to_string(), value.to_string())].into(),
            remove: Vec::new(),
            replace: false,
            validate_only: false,
        },
    )
    .unwrap();
}

/// Brokers 0 and 1 out of `t`'s ISR (1 eligible), then broker 0, the last in-sync replica, and broker 1 die: only
/// broker 2, out of sync, is alive.
fn only_an_out_of_sync_replica_alive(unclean_default: bool) -> Cluster {
    let config = ControllerConfig {
        min_insync_replicas: 2,
        unclean_leader_election: unclean_default,
        ..ControllerConfig::default()
    };
    let mut c = Cluster::with_config(config, &[None, None, None]);
    c.create_assigned("t", vec![vec![0, 1, 2]]);
    c.alter_isr("t", 0, vec![0, 1, 2]).unwrap();
    c.alter_isr("t", 0, vec![0, 1]).unwrap();
    c.alter_isr("t", 0, vec![0]).unwrap();
    advance(&mut c, 5_000, &[0, 1, 2]);
    advance(&mut c, 14_500, &[0, 2]);
    advance(&mut c, 24_000, &[2]);
    assert!(c.image.brokers[&0].fenced && c.image.brokers[&1].fenced);
    c
}

#[test]
fn unclean_leader_election_lets_a_live_out_of_sync_replica_lead_only_where_allowed() {
    // By default the partition waits for a replica that holds every committed record.
    let mut c = only_an_out_of_sync_replica_alive(false);
    let p = c.partition("t", 0);
    assert_eq!((p.leader, p.isr.clone()), (-1, vec![0]), "offline");
    // Setting unclean.leader.election.enable=true on the topic elects the live replica at once (as Kafka).
    let epoch = p.leader_epoch;
    set_topic_config(&mut c, 25_000, "unclean.leader.election.enable", "true");
    let p = c.partition("t", 0);
    assert_eq!((p.leader, p.isr.clone()), (2, vec![2]), "unclean election");
    assert!(
        p.elr.is_empty(),
        "the eligible replicas follow the new leader"
    );
    assert!(p.leader_epoch > epoch);

    // With the broker default on, the election happens as the last in-sync replica dies.
    let c = only_an_out_of_sync_replica_alive(true);
    let p = c.partition("t", 0);
    assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));

    // A topic's own false wins over the broker default: offline until a clean replica returns, and then it leads.
    let config = ControllerConfig {
        unclean_leader_election: true,
        ..ControllerConfig::default()
    };
    let mut c = Cluster::with_config(config, &[None, None]);
    c.create_assigned("t", vec![vec![0, 1]]);
    c.alter_isr("t", 0, vec![0, 1]).unwrap();
    set_topic_config(&mut c, 0, "unclean.leader.election.enable", "false");
    c.alter_isr("t", 0, vec![0]).unwrap();
    advance(&mut c, 5_000, &[0, 1]);
    advance(&mut c, 14_500, &[1]);
    let p = c.partition("t", 0);
    assert_eq!(
        (p.leader, p.isr.clone()),
        (-1, vec![0]),
        "the topic says no"
    );
}

#[test]
fn with_unclean_election_allowed_a_returning_out_of_sync_replica_leads_an_offline_partition() {
    let config = ControllerConfig {
        min_insync_replicas: 1,
        ..ControllerConfig::default()
    };
    let mut c = Cluster::with_config(config, &[None, None]);
    c.create_assigned("t", vec![vec![0, 1]]);
    c.alter_isr("t", 0, vec![0, 1]).unwrap();
    c.alter_isr("t", 0, vec![0]).unwrap();
    // Broker 1 (out of sync) dies, then broker 0 (the ISR): offline. Unclean election is then allowed.
    advance(&mut c, 5_000, &[0, 1]);
    advance(&mut c, 14_500, &[0]);
    advance(&mut c, 24_000, &[]);
    assert_eq!(c.partition("t", 0).leader, -1);
    set_topic_config(&mut c, 24_500, "unclean.leader.election.enable", "true");
    assert_eq!(
        c.partition("t", 0).leader,
        -1,
        "no replica is alive to lead"
    );
    // Broker 1 comes back first: it leads, though it may lack records broker 0 had.
    let epoch = c.image.brokers[&1].broker_epoch;
    c.heartbeat(1, epoch, 25_000).unwrap();
    let p = c.partition("t", 0);
    assert_eq!((p.leader, p.isr.clone()), (1, vec![1]));
}

#[test]
fn a_returning_broker_leads_where_it_is_eligible_and_where_an_unclean_election_is_allowed_at_once()
{
    let config = ControllerConfig {
        min_insync_replicas: 2,
        ..ControllerConfig::default()
    };
    let mut c = Cluster::with_config(config, &[None, None, None]);
    // `t`: broker 1 left an ISR below 2 and is eligible. `u` (unclean elections allowed): broker 1 is out of sync.
    c.create_assigned("t", vec![vec![0, 1, 2]]);
    c.alter_isr("t", 0, vec![0, 1, 2]).unwrap();
    c.alter_isr("t", 0, vec![0, 1]).unwrap();
    c.alter_isr("t", 0, vec![0]).unwrap();
    c.create_assigned("u", vec![vec![0, 1]]);
    c.alter_isr("u", 0, vec![0]).unwrap();
    c.request(
        0,
        ControllerRequest::AlterTopicConfigs {
            name: "u".into(),
            set: [(
                "unclean.leader.election.enable".to_string(),
                "true".to_string(),
            )]
            .into(),
            remove: Vec::new(),
            replace: false,
            validate_only: false,
        },
    )
    .unwrap();
    assert_eq!(c.partition("t", 0).elr, vec![1]);
    // Broker 1, then broker 0 and 2, go silent: both partitions are offline.
    advance(&mut c, 5_000, &[0, 1, 2]);
    advance(&mut c, 14_500, &[0, 2]);
    advance(&mut c, 24_000, &[]);
    assert_eq!(
        (c.partition("t", 0).leader, c.partition("u", 0).leader),
        (-1, -1)
    );
    // Broker 1 returns: it leads both, `t` as its eligible replica, `u` by an unclean election.
    let epoch = c.image.brokers[&1].broker_epoch;
    c.heartbeat(1, epoch, 25_000).unwrap();
    let (t, u) = (c.partition("t", 0), c.partition("u", 0));
    assert_eq!((t.leader, t.isr.clone()), (1, vec![1]), "eligible");
    assert_eq!((u.leader, u.isr.clone()), (1, vec![1]), "unclean");
}
