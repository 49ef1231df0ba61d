// A group of dht-rpc@2.3.0 nodes on 127.0.0.1, driven by JSON lines on stdin, for the
// interop tests. Every node serves the command "kv": an update stores the value under the
// target, a query answers the stored value. Every handler call is recorded.
//
// usage: node rpc-nodes.js COUNT [--bootstrap HOST:PORT]... [--ephemeral]
// stdout: first {"ready":true,"nodes":[{"port","id"}]} once all nodes are bootstrapped,
// then one {"re": N, ...} answer per request line {"re": N, "op": ..., ...}.
// The process exits when stdin closes, or after 300 s whatever happens.
'use strict'

const path = require('path')
const dgram = require('dgram')
const readline = require('readline')
const hyperdhtDir = path.dirname(require.resolve('hyperdht/package.json'))
const dhtRpc = require(require.resolve('dht-rpc', { paths: [hyperdhtDir] }))

const args = process.argv.slice(2)
const count = Number(args[0] || 1)
const bootstrap = []
let ephemeral = false
for (let i = 1; i < args.length; i++) {
  if (args[i] === '--bootstrap') bootstrap.push(args[++i])
  else if (args[i] === '--ephemeral') ephemeral = true
}

setTimeout(() => process.exit(3), 300 * 1000).unref()

const handled = []
const nodes = []
for (let i = 0; i < count; i++) {
  const socket = dgram.createSocket('udp4')
  const node = dhtRpc({ bootstrap, ephemeral, socket })
  socket.bind(0, '127.0.0.1')
  const store = new Map()
  node.on('query:kv', (q, cb) => {
    handled.push({ node: i, kind: 'query', target: q.target.toString('hex'), value: hex(q.value), from: q.node.port })
    cb(null, store.get(q.target.toString('hex')) || null)
  })
  node.on('update:kv', (q, cb) => {
    handled.push({ node: i, kind: 'update', target: q.target.toString('hex'), value: hex(q.value), from: q.node.port })
    store.set(q.target.toString('hex'), q.value)
    cb(null, null)
  })
  node.on('warning', () => {})
  nodes.push(node)
}

function hex (b) { return b ? b.toString('hex') : null }
function out (o) { process.stdout.write(JSON.stringify(o) + '\n') }
function results (rs) {
  return (rs || []).map((r) => ({ id: hex(r.node.id), host: r.node.host, port: r.node.port, value: hex(r.value) }))
}

let pending = nodes.length
nodes.forEach((n) => n.ready(() => {
  if (--pending === 0) {
    out({ ready: true, nodes: nodes.map((n) => ({ port: n.address().port, id: n.id.toString('hex') })) })
  }
}))

const rl = readline.createInterface({ input: process.stdin })
rl.on('close', () => { nodes.forEach((n) => n.destroy()); process.exit(0) })
rl.on('line', (line) => {
  const req = JSON.parse(line)
  const node = nodes[req.node || 0]
  const reply = (o) => out(Object.assign({ re: req.re }, o))
  const fail = (err) => reply({ error: err.message })
  const q = req.target && { command: req.command, target: Buffer.from(req.target, 'hex'), value: req.value ? Buffer.from(req.value, 'hex') : null }
  switch (req.op) {
    case 'query':
      return node.query(q, (err, rs) => err ? fail(err) : reply({ results: results(rs) }))
    case 'update':
      return node.update(q, (err, rs) => err ? fail(err) : reply({ results: results(rs) }))
    case 'ping':
      return node.ping({ host: req.host, port: req.port }, (err, me, peer) => err ? fail(err) : reply({ observed: me, id: hex(peer.id) }))
    case 'holepunch':
      return node.holepunch({ host: req.host, port: req.port }, { host: req.refHost, port: req.refPort }, (err) => err ? fail(err) : reply({ ok: true }))
    case 'bootstrap':
      return node.bootstrap((err) => err ? fail(err) : reply({ ok: true }))
    case 'handled':
      return reply({ handled: handled.splice(0) })
    case 'table':
      return reply({ nodes: node.nodes.toArray().map((c) => ({ id: hex(c.id), port: c.port })) })
    default:
      return reply({ error: 'unknown op ' + req.op })
  }
})
