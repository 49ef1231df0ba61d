// What rpc-nodes.js and hyperdht-nodes.js share: their arguments, a group of nodes on
// 127.0.0.1, the JSON-lines protocol (a "ready" line, then one {"re": N, ...} answer per
// request line), the ops both kinds of node answer alike, and a bounded lifetime.
//
// Arguments: COUNT [--bootstrap HOST:PORT]... [--ephemeral]
'use strict'

const dgram = require('dgram')
const readline = require('readline')

function hex (b) { return b ? b.toString('hex') : null }
function out (o) { process.stdout.write(JSON.stringify(o) + '\n') }

// Starts COUNT nodes made by `make(opts, i)`; the process ends after 300 s whatever happens.
function group (make) {
  const args = process.argv.slice(2)
  const count = Number(args[0] || 1)
  const bootstrap = []
  let ephemeral = false
  for (let i = 1; i < args.length; i++) {
    if (args[i] === '--bootstrap') bootstrap.push(args[++i])
    else if (args[i] === '--ephemeral') ephemeral = true
  }
  setTimeout(() => process.exit(3), 300 * 1000).unref()
  const nodes = []
  for (let i = 0; i < count; i++) {
    const socket = dgram.createSocket('udp4')
    nodes.push(make({ bootstrap, ephemeral, socket }, i))
    socket.bind(0, '127.0.0.1')
  }
  return nodes
}

// Prints the ready line once every node is bootstrapped, then answers requests: ping,
// holepunch and bootstrap here, anything else through `handle(req, node, reply)`.
function serve (nodes, handle) {
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
    const ok = (err) => err ? reply({ error: err.message }) : reply({ ok: true })
    switch (req.op) {
      case 'ping':
        return node.ping({ host: req.host, port: req.port }, (err, me, peer) => err ? reply({ error: err.message }) : reply({ observed: me, id: hex(peer.id) }))
      case 'holepunch':
        return node.holepunch({ host: req.host, port: req.port }, { host: req.refHost, port: req.refPort }, ok)
      case 'bootstrap':
        return node.bootstrap(ok)
      default:
        return handle(req, node, reply)
    }
  })
}

module.exports = { hex, out, group, serve }
