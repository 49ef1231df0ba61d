// A group of dht-rpc@2.3.0 nodes on 127.0.0.1, driven by JSON lines on stdin, for the
// interop tests (see harness.js). Every node serves the command "kv": an update stores the
// value under the target, a query answers the stored value. Every handler call is recorded.
//
// usage: node rpc-nodes.js COUNT [--bootstrap HOST:PORT]... [--ephemeral]
'use strict'

const path = require('path')
const { hex, group, serve } = require('./harness')
const hyperdhtDir = path.dirname(require.resolve('hyperdht/package.json'))
const dhtRpc = require(require.resolve('dht-rpc', { paths: [hyperdhtDir] }))

const handled = []
const nodes = group((opts, i) => {
  const node = dhtRpc(opts)
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
  return node
})

function results (rs) {
  return (rs || []).map((r) => ({ id: hex(r.node.id), host: r.node.host, port: r.node.port, value: hex(r.value) }))
}

serve(nodes, (req, node, reply) => {
  const done = (err, rs) => err ? reply({ error: err.message }) : reply({ results: results(rs) })
  const q = req.target && { command: req.command, target: Buffer.from(req.target, 'hex'), value: req.value ? Buffer.from(req.value, 'hex') : null }
  switch (req.op) {
    case 'query': return node.query(q, done)
    case 'update': return node.update(q, done)
    case 'handled': return reply({ handled: handled.splice(0) })
    case 'table': return reply({ nodes: node.nodes.toArray().map((c) => ({ id: hex(c.id), port: c.port })) })
    default: return reply({ error: 'unknown op ' + req.op })
  }
})
