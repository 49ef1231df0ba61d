// A group of hyperdht@1.3.0 nodes on 127.0.0.1, driven by JSON lines on stdin, for the
// interop tests (see harness.js). Records every announce / unannounce / lookup event.
//
// usage: node hyperdht-nodes.js COUNT [--bootstrap HOST:PORT]... [--ephemeral]
'use strict'

const hyperdht = require('hyperdht')
const { hex, group, serve } = require('./harness')

const events = []
const nodes = group((opts, i) => {
  const node = hyperdht(opts)
  node.on('announce', (key, peer) => events.push({ node: i, kind: 'announce', key: key.toString('hex'), host: peer.host, port: peer.port }))
  node.on('unannounce', (key, peer) => events.push({ node: i, kind: 'unannounce', key: key.toString('hex'), host: peer.host, port: peer.port }))
  node.on('lookup', (key) => events.push({ node: i, kind: 'lookup', key: key.toString('hex') }))
  node.dht.on('warning', () => {})
  return node
})

function results (rs) {
  return (rs || []).map((r) => ({ node: { id: hex(r.node.id), host: r.node.host, port: r.node.port }, peers: r.peers, localPeers: r.localPeers }))
}

serve(nodes, (req, node, reply) => {
  const done = (err, rs) => err ? reply({ error: err.message }) : reply({ results: results(rs) })
  const key = req.key && Buffer.from(req.key, 'hex')
  const opts = {}
  if (req.port) opts.port = req.port
  if (req.localAddress) opts.localAddress = req.localAddress
  switch (req.op) {
    case 'announce': return node.announce(key, opts, done)
    case 'lookup': return node.lookup(key, opts, done)
    case 'unannounce': return node.unannounce(key, opts, (err) => err ? reply({ error: err.message }) : reply({ ok: true }))
    case 'events': return reply({ events: events.splice(0) })
    default: return reply({ error: 'unknown op ' + req.op })
  }
})
