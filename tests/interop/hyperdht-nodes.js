// A group of hyperdht@1.3.0 nodes on 127.0.0.1, driven by JSON lines on stdin, for the
// interop tests. Records every announce / unannounce / lookup event the nodes emit.
//
// usage: node hyperdht-nodes.js COUNT [--bootstrap HOST:PORT]... [--ephemeral]
// stdout: first {"ready":true,"nodes":[{"port","id"}]}, then one {"re": N, ...} answer per
// request line {"re": N, "op": ..., ...}. Exits when stdin closes, or after 300 s.
'use strict'

const dgram = require('dgram')
const readline = require('readline')
const hyperdht = require('hyperdht')

const args = process.argv.slice(2)
const count = Number(args[0] || 1)
const bootstrap = []
let ephemeral = false
for (let i = 1; i < args.length; i++) {
  if (args[i] === '--bootstrap') bootstrap.push(args[++i])
  else if (args[i] === '--ephemeral') ephemeral = true
}

setTimeout(() => process.exit(3), 300 * 1000).unref()

const events = []
const nodes = []
for (let i = 0; i < count; i++) {
  const socket = dgram.createSocket('udp4')
  const node = hyperdht({ bootstrap, ephemeral, socket })
  socket.bind(0, '127.0.0.1')
  node.on('announce', (key, peer) => events.push({ node: i, kind: 'announce', key: key.toString('hex'), host: peer.host, port: peer.port }))
  node.on('unannounce', (key, peer) => events.push({ node: i, kind: 'unannounce', key: key.toString('hex'), host: peer.host, port: peer.port }))
  node.on('lookup', (key) => events.push({ node: i, kind: 'lookup', key: key.toString('hex') }))
  node.dht.on('warning', () => {})
  nodes.push(node)
}

function hex (b) { return b ? b.toString('hex') : null }
function out (o) { process.stdout.write(JSON.stringify(o) + '\n') }
function results (rs) {
  return (rs || []).map((r) => ({ node: { id: hex(r.node.id), host: r.node.host, port: r.node.port }, peers: r.peers, localPeers: r.localPeers }))
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
  const done = (err, rs) => err ? reply({ error: err.message }) : reply({ results: results(rs) })
  const key = req.key && Buffer.from(req.key, 'hex')
  const opts = {}
  if (req.port) opts.port = req.port
  if (req.localAddress) opts.localAddress = req.localAddress
  switch (req.op) {
    case 'announce': return node.announce(key, opts, done)
    case 'lookup': return node.lookup(key, opts, done)
    case 'unannounce': return node.unannounce(key, opts, (err) => err ? reply({ error: err.message }) : reply({ ok: true }))
    case 'ping':
      return node.ping({ host: req.host, port: req.port }, (err, me, peer) => err ? reply({ error: err.message }) : reply({ observed: me, id: hex(peer.id) }))
    case 'holepunch':
      return node.holepunch({ host: req.host, port: req.port }, { host: req.refHost, port: req.refPort }, (err) => err ? reply({ error: err.message }) : reply({ ok: true }))
    case 'bootstrap': return node.bootstrap((err) => err ? reply({ error: err.message }) : reply({ ok: true }))
    case 'events': return reply({ events: events.splice(0) })
    default: return reply({ error: 'unknown op ' + req.op })
  }
})
