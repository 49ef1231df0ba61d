// A hyperdht@1.3.0 peer for the NAT lab, driven by JSON lines on stdin, with the same ops as
// tests/src/bin/lab-peer.rs. It only does what the original does: its holepunch is the
// relayed ping alone, and it reports no address for the peer it reached.
//
// usage: node lab-peer.js --bootstrap HOST:PORT
'use strict'

const dgram = require('dgram')
const readline = require('readline')
const hyperdht = require('hyperdht')

const args = process.argv.slice(2)
const bootstrap = args[args.indexOf('--bootstrap') + 1]
const PREFIX = Buffer.from([0, 0, 7])
setTimeout(() => process.exit(3), 900 * 1000).unref()

let dht = null
let inbox = []
let waiter = null

function fresh (cb) {
  if (dht) dht.destroy()
  inbox = []
  const socket = dgram.createSocket('udp4')
  dht = hyperdht({ bootstrap: [bootstrap], ephemeral: true, socket })
  dht.dht.on('warning', () => {})
  socket.on('message', (msg, rinfo) => {
    if (msg.length < 3 || !msg.slice(0, 3).equals(PREFIX)) return
    inbox.push({ from: rinfo.address + ':' + rinfo.port, data: msg.slice(3) })
    if (waiter) waiter()
  })
  socket.bind(0, () => dht.ready(() => cb(socket.address().port)))
}

function recv (timeout, cb) {
  if (inbox.length) return cb(inbox.shift())
  const t = setTimeout(() => { waiter = null; cb(null) }, timeout)
  waiter = () => { clearTimeout(t); waiter = null; cb(inbox.shift()) }
}

function parse (a) {
  const i = a.lastIndexOf(':')
  return { host: a.slice(0, i), port: Number(a.slice(i + 1)) }
}

function out (o) { process.stdout.write(JSON.stringify(o) + '\n') }

const queue = []
let busy = false
function next () {
  if (busy || !queue.length) return
  busy = true
  const req = queue.shift()
  handle(req, (o) => { o.re = req.re; out(o); busy = false; next() })
}

function handle (req, reply) {
  const key = req.key && Buffer.from(req.key, 'hex')
  switch (req.op) {
    case 'reset': return fresh((port) => reply({ addr: '0.0.0.0:' + port }))
    case 'announce': return dht.announce(key, {}, (err, rs) => err ? reply({ error: err.message }) : reply({ ok: true, replies: rs.length }))
    case 'lookup': return dht.lookup(key, {}, (err, rs) => err ? reply({ error: err.message }) : reply({ results: rs.map((r) => ({ node: r.node.host + ':' + r.node.port, peers: r.peers.map((p) => p.host + ':' + p.port) })) }))
    case 'holepunch': {
      const started = Date.now()
      return dht.holepunch(parse(req.peer), parse(req.via), (err) => err ? reply({ error: err.message }) : reply({ ok: true, path: 'relayed', from: req.peer, ms: Date.now() - started }))
    }
    case 'send': {
      const to = parse(req.to)
      const buf = Buffer.concat([PREFIX, Buffer.from(req.data || '')])
      return dht.socket.send(buf, 0, buf.length, to.port, to.host, () => reply({ ok: true }))
    }
    case 'recv': return recv(req.timeout_ms || 1000, (m) => m ? reply({ from: m.from, data: m.data.toString() }) : reply({ error: 'timeout' }))
    case 'echo': return recv(req.timeout_ms || 1000, (m) => {
      if (!m) return reply({ error: 'timeout' })
      const to = parse(m.from)
      const buf = Buffer.concat([PREFIX, Buffer.from('echo:'), m.data])
      dht.socket.send(buf, 0, buf.length, to.port, to.host, () => reply({ from: m.from }))
    })
    default: return reply({ error: 'unknown op ' + req.op })
  }
}

fresh((port) => {
  out({ ready: true, addr: '0.0.0.0:' + port })
  const rl = readline.createInterface({ input: process.stdin })
  rl.on('close', () => process.exit(0))
  rl.on('line', (line) => { queue.push(JSON.parse(line)); next() })
})
