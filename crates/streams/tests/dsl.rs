//! Every DSL operation and window kind against the test driver (no broker).

use std::time::Duration;

use bytes::Bytes;
use strom_streams::processor::{Processor, ProcessorContext, PunctuationType};
use strom_streams::store::{StoreKind, StoreSpec};
use strom_streams::{
    Change, DeserializationHandler, JoinWindows, Json, Materialized, Record, SessionWindows,
    SlidingWindows, StreamsBuilder, StreamsConfig, TaskError, TimeWindows, TopologyTestDriver,
    Window, Windowed,
};

fn s(v: &str) -> String {
    v.to_string()
}

fn windowed(key: &str, start: i64, end: i64) -> Windowed<String> {
    Windowed {
        key: s(key),
        window: Window { start, end },
    }
}

#[test]
fn stateless_operations_transform_filter_split_and_merge() {
    let b = StreamsBuilder::new();
    let input = b.stream::<String, i64>("in");
    input
        .filter(|_, v| *v > 0)
        .map_values(|v| v * 10)
        .to("positive-times-ten");
    input.filter_not(|_, v| *v > 0).to("non-positive");
    input
        .map(|k, v| (format!("{k}!"), v.to_string()))
        .to("mapped");
    input
        .flat_map_values(|v| (0..v.clamp(0, 3)).collect::<Vec<_>>())
        .to("flat");
    input.select_key(|_, v| v.to_string()).to("rekeyed");
    let branches = input
        .split()
        .branch(|_, v| *v < 0)
        .branch(|_, v| *v < 10)
        .default_branch();
    branches[0].to("negative");
    branches[1].to("small");
    branches[2].to("large");
    branches[0].merge(&branches[2]).to("negative-or-large");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let peeked = seen.clone();
    input
        .peek(move |k, _| peeked.lock().unwrap().push(k.clone()))
        .foreach(|_, _| {});

    let mut d = TopologyTestDriver::new(b.build());
    for (k, v) in [("a", 1), ("b", -2), ("c", 30), ("d", 0)] {
        d.pipe("in", s(k), v as i64, 100);
    }
    let pairs = |d: &mut TopologyTestDriver, t: &str| d.read_key_values::<String, i64>(t);
    assert_eq!(
        pairs(&mut d, "positive-times-ten"),
        vec![(s("a"), 10), (s("c"), 300)]
    );
    assert_eq!(
        pairs(&mut d, "non-positive"),
        vec![(s("b"), -2), (s("d"), 0)]
    );
    assert_eq!(
        d.read_key_values::<String, String>("mapped"),
        vec![
            (s("a!"), s("1")),
            (s("b!"), s("-2")),
            (s("c!"), s("30")),
            (s("d!"), s("0"))
        ]
    );
    assert_eq!(
        pairs(&mut d, "flat"),
        vec![(s("a"), 0), (s("c"), 0), (s("c"), 1), (s("c"), 2)]
    );
    assert_eq!(pairs(&mut d, "rekeyed")[2], (s("30"), 30));
    assert_eq!(pairs(&mut d, "negative"), vec![(s("b"), -2)]);
    assert_eq!(pairs(&mut d, "small"), vec![(s("a"), 1), (s("d"), 0)]);
    assert_eq!(pairs(&mut d, "large"), vec![(s("c"), 30)]);
    assert_eq!(
        pairs(&mut d, "negative-or-large"),
        vec![(s("b"), -2), (s("c"), 30)]
    );
    assert_eq!(*seen.lock().unwrap(), vec![s("a"), s("b"), s("c"), s("d")]);
}

#[test]
fn records_keep_their_timestamps_and_headers() {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("in")
        .map_values(|v| v.to_uppercase())
        .to("out");
    let mut d = TopologyTestDriver::new(b.build());
    d.pipe("in", s("k"), s("v"), 1234);
    let out = d.read_output::<String, String>("out");
    assert_eq!(out, vec![Record::new(s("k"), s("V"), 1234)]);
}

#[test]
fn count_reduce_and_aggregate_per_key_through_a_repartition_topic() {
    let b = StreamsBuilder::new();
    let words = b
        .stream::<(), String>("lines")
        .flat_map_values(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>());
    words
        .group_by(|_, w| w.clone())
        .count(Materialized::named("word-counts"))
        .to_stream()
        .to("counts");
    let lengths = words.select_key(|_, w| w.chars().next().unwrap().to_string());
    lengths
        .map_values(|w| w.len() as i64)
        .group_by_key()
        .reduce(|a, b| a.max(b), Materialized::named("longest"))
        .to_stream()
        .to("longest-by-initial");
    lengths
        .group_by_key()
        .aggregate(
            || Json(Vec::<String>::new()),
            |_, w, Json(mut all)| {
                all.push(w);
                Json(all)
            },
            Materialized::named("all-words"),
        )
        .to_stream()
        .to("words-by-initial");
    let topology = b.build();
    assert!(topology.subtopologies().len() >= 2, "{topology:?}");
    let mut d = TopologyTestDriver::new(topology);
    d.pipe("lines", (), s("to be or not to be"), 10);
    let counts = d.read_key_values::<String, Option<i64>>("counts");
    assert_eq!(counts.len(), 6);
    assert_eq!(counts.last(), Some(&(s("be"), Some(2))));
    let store = d.key_value_store::<String, i64>("word-counts");
    assert_eq!(store.get(&s("to")), Some(2));
    assert_eq!(store.get(&s("or")), Some(1));
    assert_eq!(store.all().len(), 4);
    // The repartition topic has Kafka Streams' name.
    assert!(!d
        .read_raw("topology-test-driver-word-counts-repartition")
        .is_empty());
    assert_eq!(
        d.key_value_store::<String, i64>("longest").get(&s("n")),
        Some(3)
    );
    let all = d.key_value_store::<String, Json<Vec<String>>>("all-words");
    assert_eq!(all.all().len(), 4, "t, b, o, n");
    let by_initial = d.read_key_values::<String, Option<Json<Vec<String>>>>("words-by-initial");
    assert_eq!(
        by_initial.last().unwrap(),
        &(s("b"), Some(Json(vec![s("be"), s("be")])))
    );
    // Every store change went to its changelog.
    let changelog = d.read_raw("topology-test-driver-word-counts-changelog");
    assert_eq!(changelog.len(), 6);
}

#[test]
fn tumbling_windows_accept_late_records_within_grace_and_drop_later_ones() {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("payments")
        .group_by_key()
        .windowed_by(TimeWindows::of_size_and_grace(
            Duration::from_secs(60),
            Duration::from_secs(10),
        ))
        .count(Materialized::named("per-minute"))
        .to_stream()
        .to("counts");
    let mut d = TopologyTestDriver::new(b.build());
    d.pipe("payments", s("card"), s("p"), 1_000);
    d.pipe("payments", s("card"), s("p"), 59_999);
    d.pipe("payments", s("card"), s("p"), 60_000); // next window
    d.pipe("payments", s("card"), s("p"), 65_000); // stream time 65 s: [0, 60) still open (grace until 70 s)
    d.pipe("payments", s("card"), s("p"), 30_000); // late, within grace: counted
    d.pipe("payments", s("card"), s("p"), 70_000); // stream time 70 s: [0, 60) closes
    d.pipe("payments", s("card"), s("p"), 30_001); // after grace: dropped
    let out = d.read_key_values::<Windowed<String>, Option<i64>>("counts");
    let first = windowed("card", 0, 60_000);
    let second = windowed("card", 60_000, 120_000);
    assert_eq!(
        out,
        vec![
            (first.clone(), Some(1)),
            (first.clone(), Some(2)),
            (second.clone(), Some(1)),
            (second.clone(), Some(2)),
            (first.clone(), Some(3)),
            (second.clone(), Some(3)),
        ]
    );
    assert_eq!(d.dropped_records(), 1);
    let store = d.window_store::<String, i64>("per-minute");
    assert_eq!(store.fetch(&s("card"), 0), Some(3));
    assert_eq!(
        store.fetch_range(&s("card"), 0, 60_000),
        vec![(0, 3), (60_000, 3)]
    );
}

#[test]
fn hopping_windows_count_a_record_in_every_window_that_holds_it() {
    let b = StreamsBuilder::new();
    b.stream::<String, i64>("metrics")
        .group_by_key()
        .windowed_by(
            TimeWindows::of_size_with_no_grace(Duration::from_secs(10))
                .advance_by(Duration::from_secs(5)),
        )
        .aggregate(
            || (i64::MAX, i64::MIN),
            |_, v, (lo, hi)| (lo.min(v), hi.max(v)),
            Materialized::default(),
        )
        .to_stream()
        .to("min-max");
    let mut d = TopologyTestDriver::new(b.build());
    d.pipe("metrics", s("h"), 5i64, 7_000);
    d.pipe("metrics", s("h"), 9i64, 8_000);
    let out = d.read_key_values::<Windowed<String>, Option<(i64, i64)>>("min-max");
    assert_eq!(
        out,
        vec![
            (windowed("h", 0, 10_000), Some((5, 5))),
            (windowed("h", 5_000, 15_000), Some((5, 5))),
            (windowed("h", 0, 10_000), Some((5, 9))),
            (windowed("h", 5_000, 15_000), Some((5, 9))),
        ]
    );
}

#[test]
fn suppress_emits_one_final_result_per_window_when_it_closes() {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("views")
        .group_by_key()
        .windowed_by(TimeWindows::of_size_and_grace(
            Duration::from_secs(10),
            Duration::from_secs(2),
        ))
        .count(Materialized::default())
        .suppress_until_window_closes()
        .to_stream()
        .to("final");
    let mut d = TopologyTestDriver::new(b.build());
    for t in [1_000, 2_000, 9_000, 11_000] {
        d.pipe("views", s("/home"), s("v"), t);
    }
    assert!(
        d.read_raw("final").is_empty(),
        "window [0,10) closes at 12 s"
    );
    d.pipe("views", s("/about"), s("v"), 5_000); // late, within grace
    d.pipe("views", s("/home"), s("v"), 12_000); // closes [0, 10)
    let out = d.read_key_values::<Windowed<String>, Option<i64>>("final");
    assert_eq!(
        out,
        vec![
            (windowed("/about", 0, 10_000), Some(1)),
            (windowed("/home", 0, 10_000), Some(3)),
        ]
    );
}

#[test]
fn session_windows_merge_when_a_record_bridges_two_sessions() {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("clicks")
        .group_by_key()
        .windowed_by_session(SessionWindows::of_inactivity_gap_and_grace(
            Duration::from_secs(5),
            Duration::from_secs(10),
        ))
        .count(Materialized::named("sessions"))
        .to_stream()
        .to("sessions");
    let mut d = TopologyTestDriver::new(b.build());
    d.pipe("clicks", s("u"), s("c"), 0);
    d.pipe("clicks", s("u"), s("c"), 8_000); // new session: gap 8 s > 5 s
    d.pipe("clicks", s("u"), s("c"), 4_000); // bridges both
    let out = d.read_key_values::<Windowed<String>, Option<i64>>("sessions");
    assert_eq!(
        out,
        vec![
            (windowed("u", 0, 0), Some(1)),
            (windowed("u", 8_000, 8_000), Some(1)),
            (windowed("u", 0, 0), None),
            (windowed("u", 8_000, 8_000), None),
            (windowed("u", 0, 8_000), Some(3)),
        ]
    );
    let sessions = d.session_store::<String, i64>("sessions").all();
    assert_eq!(sessions, vec![(windowed("u", 0, 8_000), 3)]);
    // A record inside a session retracts it and sends it anew, so a downstream subtractor sees the old count go.
    d.pipe("clicks", s("u"), s("c"), 6_000);
    assert_eq!(
        d.read_key_values::<Windowed<String>, Option<i64>>("sessions"),
        vec![
            (windowed("u", 0, 8_000), None),
            (windowed("u", 0, 8_000), Some(4))
        ]
    );
    d.pipe("clicks", s("u"), s("c"), 20_000);
    d.pipe("clicks", s("u"), s("c"), 1_000); // its session [0, 8 s] closed at 8 s + grace 10 s < 20 s: dropped
    assert_eq!(d.dropped_records(), 1);
}

#[test]
fn sliding_windows_aggregate_each_record_with_its_neighbours() {
    let b = StreamsBuilder::new();
    b.stream::<String, i64>("t")
        .group_by_key()
        .windowed_by_sliding(SlidingWindows::of_time_difference_and_grace(
            Duration::from_millis(10),
            Duration::from_secs(60),
        ))
        .aggregate(|| 0i64, |_, v, sum| sum + v, Materialized::named("sums"))
        .to_stream()
        .to("sums");
    let mut d = TopologyTestDriver::new(b.build());
    d.pipe("t", s("k"), 1i64, 100);
    d.pipe("t", s("k"), 2i64, 105);
    let out = d.read_key_values::<Windowed<String>, Option<i64>>("sums");
    // [90,100] {1}; then the record at 105: its own window [95,105] {1,2}, and the window right after the
    // first record [101,111] {2}.
    assert_eq!(
        out,
        vec![
            (windowed("k", 90, 100), Some(1)),
            (windowed("k", 95, 105), Some(3)),
            (windowed("k", 101, 111), Some(2)),
        ]
    );
}

#[test]
fn stream_table_joins_see_the_table_as_of_each_stream_record() {
    let b = StreamsBuilder::new();
    let customers = b.table::<String, String>("customers", Materialized::named("customers"));
    let orders = b.stream::<String, i64>("orders");
    orders
        .join(&customers, |amount, name| format!("{name}:{amount}"))
        .to("enriched");
    orders
        .left_join(&customers, |amount, name| {
            format!("{}:{amount}", name.map_or("?", |n| n))
        })
        .to("enriched-left");
    let mut d = TopologyTestDriver::new(b.build());
    d.pipe("orders", s("c1"), 5i64, 1); // before the customer: inner drops it
    d.pipe("customers", s("c1"), s("Ada"), 2);
    d.pipe("orders", s("c1"), 7i64, 3);
    d.pipe_raw("customers", Some(Bytes::from("c1")), None, 4)
        .unwrap(); // tombstone
    d.pipe("orders", s("c1"), 9i64, 5);
    assert_eq!(
        d.read_key_values::<String, String>("enriched"),
        vec![(s("c1"), s("Ada:7"))]
    );
    assert_eq!(
        d.read_key_values::<String, String>("enriched-left"),
        vec![
            (s("c1"), s("?:5")),
            (s("c1"), s("Ada:7")),
            (s("c1"), s("?:9"))
        ]
    );
}

#[test]
fn stream_stream_joins_match_either_side_first_and_emit_unmatched_when_windows_close() {
    let b = StreamsBuilder::new();
    let clicks = b.stream::<String, String>("clicks");
    let views = b.stream::<String, String>("views");
    let w = JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(10));
    clicks
        .join_windowed(&views, |c, v| format!("{c}+{v}"), w)
        .to("inner");
    clicks
        .left_join_windowed(&views, |c, v| format!("{c}+{}", v.map_or("-", |v| v)), w)
        .to("left");
    clicks
        .outer_join_windowed(
            &views,
            |c, v| format!("{}+{}", c.map_or("-", |c| c), v.map_or("-", |v| v)),
            w,
        )
        .to("outer");
    let mut d = TopologyTestDriver::new(b.build());
    d.pipe("views", s("a"), s("v1"), 1_000); // right side first
    d.pipe("clicks", s("a"), s("c1"), 5_000); // joins v1
    d.pipe("clicks", s("b"), s("c2"), 6_000); // no partner yet
    d.pipe("views", s("b"), s("v2"), 20_000); // too far from c2 (14 s)
    d.pipe("clicks", s("z"), s("c3"), 40_000); // advances stream time: c2's and v2's windows close
    let pairs = |d: &mut TopologyTestDriver, t: &str| d.read_key_values::<String, String>(t);
    assert_eq!(pairs(&mut d, "inner"), vec![(s("a"), s("c1+v1"))]);
    assert_eq!(
        pairs(&mut d, "left"),
        vec![(s("a"), s("c1+v1")), (s("b"), s("c2+-"))]
    );
    assert_eq!(
        pairs(&mut d, "outer"),
        vec![
            (s("a"), s("c1+v1")),
            (s("b"), s("c2+-")),
            (s("b"), s("-+v2"))
        ]
    );
}

#[test]
fn table_table_joins_follow_updates_and_deletes_on_both_sides() {
    let b = StreamsBuilder::new();
    let left = b.table::<String, String>("l", Materialized::default());
    let right = b.table::<String, String>("r", Materialized::default());
    left.join(&right, |a, b| format!("{a}{b}"))
        .to_stream()
        .to("inner");
    left.left_join(&right, |a, b| format!("{a}{}", b.map_or("-", |b| b)))
        .to_stream()
        .to("left");
    left.outer_join(&right, |a, b| {
        format!("{}{}", a.map_or("-", |a| a), b.map_or("-", |b| b))
    })
    .to_stream()
    .to("outer");
    let mut d = TopologyTestDriver::new(b.build());
    d.pipe("l", s("k"), s("A"), 1);
    d.pipe("r", s("k"), s("1"), 2);
    d.pipe("l", s("k"), s("B"), 3);
    d.pipe_raw("r", Some(Bytes::from("k")), None, 4).unwrap();
    let read = |d: &mut TopologyTestDriver, t: &str| d.read_key_values::<String, Option<String>>(t);
    assert_eq!(
        read(&mut d, "inner"),
        vec![
            (s("k"), Some(s("A1"))),
            (s("k"), Some(s("B1"))),
            (s("k"), None)
        ]
    );
    assert_eq!(
        read(&mut d, "left"),
        vec![
            (s("k"), Some(s("A-"))),
            (s("k"), Some(s("A1"))),
            (s("k"), Some(s("B1"))),
            (s("k"), Some(s("B-")))
        ]
    );
    assert_eq!(read(&mut d, "outer").last(), Some(&(s("k"), Some(s("B-")))));
}

#[test]
fn table_filters_and_regrouping_aggregations_subtract_what_moved() {
    let b = StreamsBuilder::new();
    // user -> region; count users per region.
    let users = b.table::<String, String>("users", Materialized::default());
    users
        .group_by(|_, region| (region.clone(), 1i64))
        .count(Materialized::named("per-region"))
        .to_stream()
        .to("per-region");
    users.filter(|_, r| r == "eu").to_stream().to("eu-users");
    let mut d = TopologyTestDriver::new(b.build());
    d.pipe("users", s("ann"), s("eu"), 1);
    d.pipe("users", s("bob"), s("eu"), 2);
    d.pipe("users", s("ann"), s("us"), 3); // ann moves
    d.pipe_raw("users", Some(Bytes::from("bob")), None, 4)
        .unwrap(); // bob leaves
    let store = d.key_value_store::<String, i64>("per-region");
    assert_eq!(store.get(&s("eu")), Some(0));
    assert_eq!(store.get(&s("us")), Some(1));
    assert_eq!(
        d.read_key_values::<String, Option<String>>("eu-users"),
        vec![
            (s("ann"), Some(s("eu"))),
            (s("bob"), Some(s("eu"))),
            (s("ann"), None),
            (s("bob"), None)
        ]
    );
}

#[test]
fn the_deserialization_handler_skips_or_fails_on_bad_records() {
    let build = || {
        let b = StreamsBuilder::new();
        b.stream::<String, i64>("in").to("out");
        b.build()
    };
    let mut config = StreamsConfig::new("app", "unused");
    config.deserialization_handler = DeserializationHandler::LogAndContinue;
    let mut d = TopologyTestDriver::with_config(build(), &config, 0);
    d.pipe_raw(
        "in",
        Some(Bytes::from("k")),
        Some(Bytes::from("not 8 bytes")),
        1,
    )
    .unwrap();
    d.pipe("in", s("k"), 5i64, 2);
    assert_eq!(d.skipped_records(), 1);
    assert_eq!(d.read_key_values::<String, i64>("out"), vec![(s("k"), 5)]);

    let mut d = TopologyTestDriver::new(build());
    let err = d
        .pipe_raw("in", Some(Bytes::from("k")), Some(Bytes::from("bad")), 1)
        .unwrap_err();
    assert!(
        matches!(err, TaskError::Deserialization { offset: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("in-0@0"), "{err}");
    assert!(d.read_raw("out").is_empty());
}

/// Counts per key and emits the counts on punctuation, on stream time and on wall-clock time.
struct Emitter;

impl Processor<String, String, String, i64> for Emitter {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, i64>) {
        ctx.schedule(Duration::from_secs(10), PunctuationType::StreamTime);
        ctx.schedule(Duration::from_secs(60), PunctuationType::WallClockTime);
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, i64>,
        record: Record<String, String>,
    ) {
        let store = ctx.key_value_store::<String, i64>("seen");
        let n = store.get(&record.key).unwrap_or(0) + 1;
        store.put(&record.key, &n);
    }

    fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, i64>,
        kind: PunctuationType,
        at: i64,
    ) {
        let store = ctx.key_value_store::<String, i64>("seen");
        for (k, n) in store.all() {
            let tag = match kind {
                PunctuationType::StreamTime => "stream",
                PunctuationType::WallClockTime => "wall",
            };
            ctx.forward(Record::new(format!("{tag}:{k}"), n, at));
        }
    }
}

#[test]
fn the_processor_api_keeps_state_and_punctuates_on_both_clocks() {
    let b = StreamsBuilder::new();
    b.add_state_store(StoreSpec {
        name: "seen".into(),
        kind: StoreKind::KeyValue,
        logged: true,
        persistent: false,
    });
    b.stream::<String, String>("in")
        .process(|| Emitter, &["seen"])
        .to("out");
    let mut d = TopologyTestDriver::new(b.build());
    d.pipe("in", s("a"), s("x"), 1_000); // the first record punctuates on stream time; next at 11 s
    assert_eq!(
        d.read_key_values::<String, i64>("out"),
        vec![(s("stream:a"), 1)]
    );
    d.pipe("in", s("a"), s("x"), 5_000);
    assert!(d.read_raw("out").is_empty());
    d.pipe("in", s("b"), s("x"), 11_000);
    assert_eq!(
        d.read_key_values::<String, i64>("out"),
        vec![(s("stream:a"), 2), (s("stream:b"), 1)]
    );
    d.advance_wall_clock_time(Duration::from_secs(30));
    assert!(d.read_raw("out").is_empty());
    d.advance_wall_clock_time(Duration::from_secs(30));
    assert_eq!(
        d.read_key_values::<String, i64>("out"),
        vec![(s("wall:a"), 2), (s("wall:b"), 1)]
    );
}

#[test]
fn changes_of_a_table_carry_the_old_value() {
    let b = StreamsBuilder::new();
    let t = b.table::<String, i64>("t", Materialized::named("t"));
    let changes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = changes.clone();
    t.to_stream()
        .foreach(move |k, v| seen.lock().unwrap().push((k.clone(), *v)));
    let mut d = TopologyTestDriver::new(b.build());
    d.pipe("t", s("k"), 1i64, 1);
    d.pipe("t", s("k"), 2i64, 2);
    assert_eq!(
        *changes.lock().unwrap(),
        vec![(s("k"), Some(1)), (s("k"), Some(2))]
    );
    let _ = Change::<i64> {
        new: None,
        old: None,
    };
}

#[test]
fn a_global_table_joins_by_a_key_the_stream_computes() {
    let b = StreamsBuilder::new();
    let countries = b.global_table::<String, String>("countries", Materialized::named("countries"));
    let users = b.stream::<String, String>("logins");
    // Value "user:country code": join on the code, no repartitioning.
    users
        .join_global(
            &countries,
            |_, v| v.split(':').nth(1).unwrap_or("").to_string(),
            |v, country| format!("{v}={country}"),
        )
        .to("inner");
    users
        .left_join_global(
            &countries,
            |_, v| v.split(':').nth(1).unwrap_or("").to_string(),
            |v, country| format!("{v}={}", country.map_or("?", |c| c)),
        )
        .to("left");
    let topology = b.build();
    assert_eq!(topology.subtopologies().len(), 1, "{topology:?}");
    let mut d = TopologyTestDriver::new(topology);
    d.pipe("countries", s("se"), s("Sweden"), 1);
    d.pipe("logins", s("u1"), s("ann:se"), 2);
    d.pipe("logins", s("u2"), s("bob:no"), 3);
    d.pipe("countries", s("no"), s("Norway"), 4);
    d.pipe("logins", s("u2"), s("bob:no"), 5);
    assert_eq!(
        d.read_key_values::<String, String>("inner"),
        vec![(s("u1"), s("ann:se=Sweden")), (s("u2"), s("bob:no=Norway"))]
    );
    assert_eq!(
        d.read_key_values::<String, String>("left"),
        vec![
            (s("u1"), s("ann:se=Sweden")),
            (s("u2"), s("bob:no=?")),
            (s("u2"), s("bob:no=Norway"))
        ]
    );
    assert_eq!(
        d.key_value_store::<String, String>("countries")
            .get(&s("no")),
        Some(s("Norway"))
    );
}

#[test]
fn foreign_key_joins_follow_changes_of_either_table_and_of_the_foreign_key() {
    let b = StreamsBuilder::new();
    // order id -> "customer id:amount"; customer id -> name.
    let orders = b.table::<String, String>("orders", Materialized::default());
    let customers = b.table::<String, String>("customers", Materialized::default());
    let customer_of = |v: &String| v.split(':').next().unwrap_or("").to_string();
    orders
        .join_foreign_key(&customers, customer_of, |o, c| format!("{o}/{c}"))
        .to_stream()
        .to("inner");
    orders
        .left_join_foreign_key(&customers, customer_of, |o, c| {
            format!("{o}/{}", c.map_or("?", |c| c))
        })
        .to_stream()
        .to("left");
    let topology = b.build();
    let mut d = TopologyTestDriver::new(topology);
    let read = |d: &mut TopologyTestDriver, t: &str| d.read_key_values::<String, Option<String>>(t);
    d.pipe("orders", s("o1"), s("c1:5"), 1); // no customer yet
    d.pipe("customers", s("c1"), s("Ada"), 2);
    d.pipe("orders", s("o2"), s("c1:7"), 3);
    assert_eq!(
        read(&mut d, "inner"),
        vec![
            (s("o1"), Some(s("c1:5/Ada"))),
            (s("o2"), Some(s("c1:7/Ada")))
        ]
    );
    assert_eq!(
        read(&mut d, "left"),
        vec![
            (s("o1"), Some(s("c1:5/?"))),
            (s("o1"), Some(s("c1:5/Ada"))),
            (s("o2"), Some(s("c1:7/Ada")))
        ]
    );
    d.pipe("customers", s("c1"), s("Ada L."), 4); // both subscribers hear of it
    let inner = read(&mut d, "inner");
    assert_eq!(inner.len(), 2);
    assert!(
        inner.contains(&(s("o1"), Some(s("c1:5/Ada L.")))),
        "{inner:?}"
    );
    d.pipe("customers", s("c2"), s("Bob"), 5);
    d.pipe("orders", s("o1"), s("c2:5"), 6); // o1 moves to c2: leaves c1
    d.pipe("customers", s("c1"), s("Ada Lovelace"), 7); // only o2 hears of it now
    assert_eq!(
        read(&mut d, "inner"),
        vec![
            (s("o1"), Some(s("c2:5/Bob"))),
            (s("o2"), Some(s("c1:7/Ada Lovelace")))
        ]
    );
    d.pipe_raw("customers", Some(Bytes::from("c2")), None, 8)
        .unwrap(); // Bob deleted
    d.pipe_raw("orders", Some(Bytes::from("o2")), None, 9)
        .unwrap(); // o2 deleted
    assert_eq!(
        read(&mut d, "inner"),
        vec![(s("o1"), None), (s("o2"), None)]
    );
    let left = read(&mut d, "left");
    assert!(left.contains(&(s("o1"), Some(s("c2:5/?")))), "{left:?}");
    assert_eq!(left.last(), Some(&(s("o2"), None)));
}

#[test]
fn windowed_reduce_keeps_one_value_per_window_in_its_window_store() {
    let b = StreamsBuilder::new();
    b.stream::<String, i64>("temps")
        .group_by_key()
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(10)))
        .reduce(|a, b| a.max(b), Materialized::named("max-temp"))
        .to_stream()
        .to("max");
    let mut d = TopologyTestDriver::new(b.build());
    for (t, v) in [(1_000, 20), (2_000, 25), (3_000, 22), (12_000, 18)] {
        d.pipe("temps", s("room"), v as i64, t);
    }
    assert_eq!(
        d.read_key_values::<Windowed<String>, Option<i64>>("max"),
        vec![
            (windowed("room", 0, 10_000), Some(20)),
            (windowed("room", 0, 10_000), Some(25)),
            (windowed("room", 0, 10_000), Some(25)),
            (windowed("room", 10_000, 20_000), Some(18)),
        ]
    );
    let store = d.window_store::<String, i64>("max-temp");
    assert_eq!(
        store.fetch_range(&s("room"), 0, 10_000),
        vec![(0, 25), (10_000, 18)]
    );
}

#[test]
#[should_panic(expected = "read by another source already")]
fn a_topic_can_have_one_source_only() {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("events").to("a");
    b.stream::<String, String>("events").to("b");
}

#[test]
fn a_filtered_windowed_result_stays_windowed_and_can_be_suppressed() {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("views")
        .group_by_key()
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(10)))
        .count(Materialized::default())
        .filter(|_, n| *n >= 2)
        .suppress_until_window_closes()
        .to_stream()
        .to("busy");
    let topology = b.build();
    // Only the count's window store and the suppression buffer: the filter keeps no store of its own.
    assert_eq!(topology.stores().count(), 2, "{topology:?}");
    let mut d = TopologyTestDriver::new(topology);
    for (page, t) in [("/a", 1_000), ("/a", 2_000), ("/b", 3_000), ("/a", 10_000)] {
        d.pipe("views", s(page), s("v"), t);
    }
    assert_eq!(
        d.read_key_values::<Windowed<String>, Option<i64>>("busy"),
        vec![(windowed("/a", 0, 10_000), Some(2))]
    );
}

#[test]
fn a_global_table_record_that_does_not_deserialize_goes_to_the_handler() {
    let build = || {
        let b = StreamsBuilder::new();
        let rates = b.global_table::<String, i64>("rates", Materialized::named("rates"));
        b.stream::<String, i64>("amounts")
            .join_global(&rates, |_, _| s("eur"), |amount, rate| amount * rate)
            .to("converted");
        b.build()
    };
    let mut config = StreamsConfig::new("app", "unused");
    config.deserialization_handler = DeserializationHandler::LogAndContinue;
    let mut d = TopologyTestDriver::with_config(build(), &config, 0);
    d.pipe_raw(
        "rates",
        Some(Bytes::from("eur")),
        Some(Bytes::from("bad")),
        1,
    )
    .unwrap();
    d.pipe("rates", s("eur"), 3i64, 2);
    d.pipe("amounts", s("a"), 5i64, 3);
    assert_eq!(d.skipped_records(), 1);
    assert_eq!(
        d.read_key_values::<String, i64>("converted"),
        vec![(s("a"), 15)]
    );

    let mut d = TopologyTestDriver::new(build());
    let err = d
        .pipe_raw(
            "rates",
            Some(Bytes::from("eur")),
            Some(Bytes::from("bad")),
            1,
        )
        .unwrap_err();
    assert!(err.to_string().contains("rates"), "{err}");
    assert_eq!(
        d.key_value_store::<String, i64>("rates").get(&s("eur")),
        None
    );
}

#[test]
fn aggregations_drop_records_whose_key_is_null() {
    let b = StreamsBuilder::new();
    b.stream::<Option<String>, String>("in")
        .group_by_key()
        .count(Materialized::named("counts"));
    let mut d = TopologyTestDriver::new(b.build());
    d.pipe("in", Some(s("k")), s("v"), 1);
    d.pipe_raw("in", None, Some(Bytes::from("v")), 2).unwrap();
    assert_eq!(
        d.key_value_store::<Option<String>, i64>("counts").all(),
        vec![(Some(s("k")), 1)]
    );
    assert_eq!(d.dropped_records(), 1);
}
