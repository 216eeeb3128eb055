#!/usr/bin/env node
// End-to-end round trip through a Strom broker with kafkajs (pure JavaScript client, pinned in package.json).
//
// Usage: node kafkajs_roundtrip.js BOOTSTRAP   (e.g. 127.0.0.1:9092)
//
// Creates topics with the kafkajs admin client, produces keyed records with headers and explicit timestamps
// (uncompressed, and gzip with the idempotent producer; kafkajs's other codecs need plugin packages), then reads
// them back and checks every partition, offset, key, value, header and timestamp, plus ListOffsets (earliest,
// latest, by time) and DescribeConfigs. Exits 0 on success; on any mismatch prints what differed and exits 1.
// Exits 2 if kafkajs is missing or the wrong version.
//
// Reading back: kafkajs's only consumer is the consumer-group one (it needs FindCoordinator/JoinGroup, which the
// broker does not serve yet), so this script fetches the way that consumer does underneath -- kafkajs's own
// Cluster and Broker.fetch(), the same request encoding and record decoding -- from explicit offsets, which is
// what assign()/seek() would do.
//
// Run by crates/cli/tests/kafkajs.rs, which also checks the gzip topic's batches on disk are gzip.
'use strict'

const REQUIRED = '2.2.4'
const INSTALL = 'run `npm ci` in crates/cli/tests/clients (or run scripts/test-deps)'

let kafkajs
let installed
try {
  kafkajs = require('kafkajs')
  installed = require('kafkajs/package.json').version
} catch (e) {
  console.error(`kafkajs is not installed (${e.message}); ${INSTALL}`)
  process.exit(2)
}
if (installed !== REQUIRED) {
  console.error(`kafkajs ${installed} is installed, the test pins ${REQUIRED}; ${INSTALL}`)
  process.exit(2)
}
const { Kafka, CompressionTypes, ConfigResourceTypes, logLevel } = kafkajs

const PARTITIONS = 3
const RECORDS = 60
const BASE_TS = 1700000000000
const TOPICS = [
  { codec: 'none', compression: CompressionTypes.None, topic: 'kafkajs-plain', idempotent: false },
  { codec: 'gzip', compression: CompressionTypes.GZIP, topic: 'kafkajs-gzip', idempotent: true },
]

class Mismatch extends Error {}

function check(cond, what) {
  if (!cond) throw new Mismatch(what)
}

const show = b => (b === null || b === undefined ? String(b) : JSON.stringify(b.toString()))

// The records to send, in send order: { i, partition, key, value, headers, timestamp }.
function expectedRecords(codec) {
  const out = []
  for (let i = 0; i < RECORDS; i++) {
    out.push({
      i,
      partition: i % PARTITIONS,
      key: i === 7 ? null : Buffer.from(`key-${i}`), // one null key
      // Compressible values, so gzip batches really are compressed.
      value: i === 11 ? null : Buffer.from(`value-${i}-` + 'abcdefgh'.repeat((i % 9) + 4)), // one null value
      headers: { trace: Buffer.from(`t${i}`), codec: Buffer.from(codec), empty: Buffer.alloc(0) },
      timestamp: BASE_TS + 7 * i,
    })
  }
  return out
}

async function createTopics(kafka) {
  const admin = kafka.admin()
  await admin.connect()
  try {
    const created = await admin.createTopics({
      waitForLeaders: true,
      timeout: 20000,
      topics: TOPICS.map(({ topic }) => ({
        topic,
        numPartitions: PARTITIONS,
        replicationFactor: 1,
        configEntries: [{ name: 'retention.ms', value: '3600000' }],
      })),
    })
    check(created === true, `createTopics returned ${created}`)
    const names = await admin.listTopics()
    for (const { topic } of TOPICS) check(names.includes(topic), `listTopics misses ${topic}: ${names}`)
    const { topics } = await admin.fetchTopicMetadata({ topics: TOPICS.map(t => t.topic) })
    for (const t of topics) {
      const ids = t.partitions.map(p => p.partitionId).sort()
      check(JSON.stringify(ids) === JSON.stringify([0, 1, 2]), `${t.name} partitions ${ids}`)
    }
    const described = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: 'kafkajs-gzip', configNames: ['retention.ms'] }],
    })
    const entries = described.resources.flatMap(r => r.configEntries)
    const retention = entries.find(e => e.configName === 'retention.ms')
    check(retention && retention.configValue === '3600000', `DescribeConfigs retention.ms: ${JSON.stringify(entries)}`)
  } finally {
    await admin.disconnect()
  }
}

// Sends all records in one send() call (kafkajs batches them per partition); returns each record's offset.
async function produce(kafka, { codec, compression, topic, idempotent }) {
  const producer = kafka.producer({ idempotent, maxInFlightRequests: idempotent ? 1 : undefined })
  await producer.connect()
  try {
    const records = expectedRecords(codec)
    const acks = await producer.send({
      topic,
      compression,
      acks: -1,
      timeout: 20000,
      messages: records.map(r => ({
        key: r.key,
        value: r.value,
        headers: r.headers,
        partition: r.partition,
        timestamp: String(r.timestamp),
      })),
    })
    const base = {}
    for (const a of acks) {
      check(a.topicName === topic && a.errorCode === 0, `produce ack ${JSON.stringify(a)}`)
      base[a.partition] = Number(a.baseOffset)
    }
    const placed = {}
    const next = {}
    for (const r of records) {
      check(r.partition in base, `no ack for ${topic}[${r.partition}]: ${JSON.stringify(acks)}`)
      next[r.partition] = next[r.partition] ?? base[r.partition]
      placed[r.i] = next[r.partition]++
    }
    for (let p = 0; p < PARTITIONS; p++) check(base[p] === 0, `${topic}[${p}] base offset ${base[p]}, want 0`)
    return placed
  } finally {
    await producer.disconnect()
  }
}

async function checkOffsets(kafka, topic) {
  const admin = kafka.admin()
  await admin.connect()
  try {
    const perPartition = RECORDS / PARTITIONS
    const offsets = await admin.fetchTopicOffsets(topic)
    for (const o of offsets) {
      check(o.low === '0' && o.high === String(perPartition), `${topic} offsets ${JSON.stringify(offsets)}`)
    }
    // Partition 1 holds i = 1, 4, 7, ... at offsets 0, 1, 2, ... with timestamps BASE_TS + 7 * i.
    const byTime = await admin.fetchTopicOffsetsByTimestamp(topic, BASE_TS + 7 * 4 + 1)
    const p1 = byTime.find(o => o.partition === 1)
    check(p1 && p1.offset === '2', `offsets by timestamp ${JSON.stringify(byTime)}: want offset 2 on partition 1`)
  } finally {
    await admin.disconnect()
  }
}

// Fetches `topic`'s `partition` from `offset` until `count` records arrived (or 60 s passed).
async function readFrom(cluster, topic, partition, offset, count) {
  const deadline = Date.now() + 60000
  const got = []
  let position = offset
  while (got.length < count) {
    check(Date.now() < deadline, `timed out reading ${topic}[${partition}] after ${got.length} of ${count}`)
    const leaders = cluster.findLeaderForPartitions(topic, [partition])
    const nodeId = Object.keys(leaders)[0]
    const broker = await cluster.findBroker({ nodeId })
    const response = await broker.fetch({
      replicaId: -1,
      isolationLevel: 0,
      maxWaitTime: 500,
      minBytes: 1,
      maxBytes: 1048576,
      topics: [{ topic, partitions: [{ partition, fetchOffset: String(position), maxBytes: 1048576 }] }],
    })
    for (const t of response.responses) {
      for (const p of t.partitions) {
        check(p.errorCode === 0, `fetch ${topic}[${p.partition}] error ${p.errorCode}`)
        // Like kafkajs's consumer: a batch may start before the fetch offset.
        for (const m of p.messages.filter(m => Number(m.offset) >= position)) got.push(m)
      }
    }
    if (got.length > 0) position = Number(got[got.length - 1].offset) + 1
  }
  return got
}

async function consumeAndCheck(kafka, { codec, topic }, placed) {
  const cluster = kafka[Object.getOwnPropertySymbols(kafka).find(s => s.description === 'private:Kafka:createCluster')]({})
  await cluster.connect()
  try {
    await cluster.addTargetTopic(topic)
    const perPartition = RECORDS / PARTITIONS
    const expected = expectedRecords(codec)
    for (let p = 0; p < PARTITIONS; p++) {
      const got = await readFrom(cluster, topic, p, 0, perPartition)
      const mine = expected.filter(r => r.partition === p)
      check(got.length === mine.length, `${topic}[${p}]: ${got.length} records, want ${mine.length}`)
      mine.forEach((r, n) => {
        const m = got[n]
        const where = `${topic}[${p}]@${placed[r.i]} (record ${r.i})`
        check(m.offset === String(placed[r.i]), `${where}: offset ${m.offset}`)
        check(show(m.key) === show(r.key), `${where}: key ${show(m.key)}, want ${show(r.key)}`)
        check(show(m.value) === show(r.value), `${where}: value ${show(m.value)}, want ${show(r.value)}`)
        check(m.timestamp === String(r.timestamp), `${where}: timestamp ${m.timestamp}, want ${r.timestamp}`)
        const headers = Object.fromEntries(Object.entries(m.headers).map(([k, v]) => [k, show(v)]))
        const want = Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k, show(v)]))
        check(JSON.stringify(headers) === JSON.stringify(want),
          `${where}: headers ${JSON.stringify(headers)}, want ${JSON.stringify(want)}`)
      })
    }
    // Starting in the middle of a partition (seek) gives exactly the records from there.
    const tail = await readFrom(cluster, topic, 2, 5, perPartition - 5)
    const offsets = tail.map(m => Number(m.offset))
    check(JSON.stringify(offsets) === JSON.stringify([...Array(perPartition - 5).keys()].map(k => k + 5)),
      `${topic}[2] from offset 5: offsets ${offsets}`)
    check(show(tail[0].key) === show(Buffer.from(`key-${2 + 3 * 5}`)), `${topic}[2]@5 key ${show(tail[0].key)}`)
  } finally {
    await cluster.disconnect()
  }
}

async function main() {
  if (process.argv.length !== 3) {
    console.error('usage: kafkajs_roundtrip.js BOOTSTRAP')
    return 2
  }
  const kafka = new Kafka({
    clientId: 'strom-test-kafkajs',
    brokers: [process.argv[2]],
    logLevel: logLevel.WARN,
    connectionTimeout: 5000,
    requestTimeout: 20000,
  })
  try {
    await createTopics(kafka)
    for (const spec of TOPICS) {
      const placed = await produce(kafka, spec)
      await checkOffsets(kafka, spec.topic)
      await consumeAndCheck(kafka, spec, placed)
      console.log(`ok: ${spec.topic} (${spec.codec}): ${RECORDS} records round-tripped`)
    }
  } catch (e) {
    if (e instanceof Mismatch) {
      console.error(`MISMATCH: ${e.message}`)
      return 1
    }
    throw e
  }
  return 0
}

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'
main().then(
  code => process.exit(code),
  e => {
    console.error(e)
    process.exit(1)
  }
)
