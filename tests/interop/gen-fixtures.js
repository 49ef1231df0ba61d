// Writes the wire fixtures with the JavaScript reference's *own* encoders:
// dht-rpc@2.3.0's protocol-buffers schema, hyperdht@1.3.0's schema, ipv4-peers, and
// udp-request's framing (a real udp-request instance over a socket that records what it
// sends). Each fixture holds the bytes and the value they were made from, so the Rust tests
// can check decode(bytes) == value and encode(value) == bytes.
//
// usage: node gen-fixtures.js OUT.json
'use strict'

const fs = require('fs')
const path = require('path')
const EventEmitter = require('events')

const hyperdhtDir = path.dirname(require.resolve('hyperdht/package.json'))
const dhtRpcDir = path.dirname(require.resolve('dht-rpc/package.json', { paths: [hyperdhtDir] }))
const fromRef = (m) => require(require.resolve(m, { paths: [dhtRpcDir, hyperdhtDir] }))

const rpcMessages = require(path.join(dhtRpcDir, 'messages.js'))
const protobuf = fromRef('protocol-buffers')
const hyperMessages = protobuf(fs.readFileSync(path.join(hyperdhtDir, 'schema.proto')))
const UDP = fromRef('udp-request')
const peers = fromRef('ipv4-peers')
const nodes = peers.idLength(32)

const out = process.argv[2]
if (!out) {
  console.error('usage: node gen-fixtures.js OUT.json')
  process.exit(2)
}

// Deterministic bytes, so the committed fixtures are stable.
let seed = 1
function bytes (n) {
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    b[i] = seed >> 16 & 0xff
  }
  return b
}
const id = () => bytes(32)
const hex = (b) => b ? b.toString('hex') : null

// Frames a message with udp-request itself, capturing what it would send.
function frame (kind, tid, msg, to) {
  let sent = null
  const socket = new EventEmitter()
  socket.send = (buf, off, len) => { sent = Buffer.from(buf.slice(off, off + len)) }
  socket.close = () => {}
  const u = UDP({ socket, requestEncoding: rpcMessages.Request, responseEncoding: rpcMessages.Response })
  if (kind === 'request') {
    u._tick = tid
    u.request(msg, { host: '127.0.0.1', port: 1 })
  } else if (kind === 'response') {
    u.response(msg, { tid, host: '127.0.0.1', port: 1 })
  } else {
    u.forwardRequest(msg, { tid }, to)
  }
  u.destroy()
  return sent
}

const fixtures = []

// A fixed-format field in the JSON: null, a structured valid value, or {invalid: hex}.
function request (name, tid, r, extra, kind) {
  const msg = {}
  for (const k of ['command', 'id', 'target', 'forwardRequest', 'forwardResponse', 'roundtripToken', 'value']) {
    if (r[k] !== undefined && r[k] !== null) msg[k] = r[k].bytes || r[k]
  }
  const buf = frame(kind || 'request', tid, msg, { host: '10.0.0.9', port: 9999 })
  fixtures.push(Object.assign({
    name,
    hex: buf.toString('hex'),
    tid,
    request: {
      command: r.command,
      id: field(r.id),
      target: field(r.target),
      forwardRequest: field(r.forwardRequest),
      forwardResponse: field(r.forwardResponse),
      roundtripToken: hex(r.roundtripToken),
      value: hex(r.value && (r.value.bytes || r.value))
    }
  }, extra || {}))
}

function response (name, tid, r, extra) {
  const msg = {}
  for (const k of ['id', 'nodes', 'value', 'roundtripToken']) {
    if (r[k] !== undefined && r[k] !== null) msg[k] = r[k].bytes || r[k]
  }
  const buf = frame('response', tid, msg)
  fixtures.push(Object.assign({
    name,
    hex: buf.toString('hex'),
    tid,
    response: {
      id: field(r.id),
      nodes: field(r.nodes),
      value: hex(r.value && (r.value.bytes || r.value)),
      roundtripToken: hex(r.roundtripToken)
    }
  }, extra || {}))
}

// Field helpers: each returns {bytes, json}.
function field (f) {
  if (f === undefined || f === null) return null
  if (Buffer.isBuffer(f)) return f.toString('hex')
  return f.json
}
function peer (host, port) {
  return { bytes: peers.encode([{ host, port }]), json: { host, port } }
}
function invalid (buf) {
  return { bytes: buf, json: { invalid: buf.toString('hex') } }
}
function nodeList (n) {
  const list = []
  for (let i = 0; i < n; i++) list.push({ id: id(), host: '10.' + (i % 256) + '.' + (i * 7 % 256) + '.' + (i * 13 % 256), port: 1000 + i * 31 })
  return {
    bytes: nodes.encode(list),
    json: list.map((n) => ({ id: n.id.toString('hex'), host: n.host, port: n.port }))
  }
}
function peerList (n) {
  const list = []
  for (let i = 0; i < n; i++) list.push({ host: '172.' + (16 + i % 16) + '.' + (i % 256) + '.' + (i * 3 % 256), port: 20000 + i })
  return { bytes: peers.encode(list), json: list }
}
function peersRequest (type, port, localAddress) {
  const r = { type, port, localAddress: localAddress ? peers.encode([localAddress]) : null }
  return {
    bytes: hyperMessages.Request.encode(r),
    json: { type, port: port === undefined ? null : port, localAddress: localAddress || null }
  }
}
function peersResponse (peerN, localPeers) {
  const p = peerN === null ? null : peerList(peerN)
  let lp = null
  if (localPeers) {
    lp = Buffer.alloc(localPeers.length * 4)
    localPeers.forEach((l, i) => { lp[i * 4] = l.suffix[0]; lp[i * 4 + 1] = l.suffix[1]; lp.writeUInt16BE(l.port, i * 4 + 2) })
  }
  return {
    bytes: hyperMessages.Response.encode({ peers: p && p.bytes, localPeers: lp }),
    json: { peers: p && p.json, localPeers: localPeers || null }
  }
}

const me = id()
const key = Buffer.from('01234567012345670123456701234567')
const token = bytes(32)

// dht-rpc built-ins.
request('ping request, ephemeral', 0, { command: '_ping' })
request('ping request with id', 1234, { command: '_ping', id: me })
request('ping request, last tid', 32766, { command: '_ping', id: me })
response('ping response', 1234, { id: id(), value: peer('192.168.1.20', 49737).bytes, roundtripToken: token })
response('ping response, ephemeral responder', 17, { value: peer('8.8.4.4', 1).bytes, roundtripToken: token })
request('find_node request', 77, { command: '_find_node', id: me, target: id() })
request('find_node request, ephemeral', 78, { command: '_find_node', target: id() })
response('find_node response, 20 nodes', 77, { id: id(), nodes: nodeList(20), roundtripToken: token })
response('find_node response, no nodes', 78, { id: id(), nodes: nodeList(0), roundtripToken: token })
response('response, empty', 5, {})

// Hole punching.
request('holepunch: ping with forwardRequest to the referrer', 300, { command: '_ping', id: me, forwardRequest: peer('203.0.113.5', 40000) })
request('holepunch: the referrer forwards with forwardResponse', 300, { command: '_ping', id: me, forwardResponse: peer('198.51.100.7', 50000) }, null, 'forward')
request('holepunch: ephemeral requester', 301, { command: '_ping', forwardRequest: peer('203.0.113.5', 40000) })

// hyperdht's peers command.
request('peers lookup', 400, { command: 'peers', id: me, target: key, value: peersRequest(0, 0) }, { peersRequest: peersRequest(0, 0).json })
request('peers lookup with local address', 401, { command: 'peers', id: me, target: key, value: peersRequest(0, 0, { host: '192.168.1.2', port: 0 }) }, { peersRequest: peersRequest(0, 0, { host: '192.168.1.2', port: 0 }).json })
request('peers announce, query round', 402, { command: 'peers', id: me, target: key, value: peersRequest(1, 10000, { host: '192.168.1.2', port: 8888 }) }, { peersRequest: peersRequest(1, 10000, { host: '192.168.1.2', port: 8888 }).json })
request('peers announce, commit with token', 403, { command: 'peers', id: me, target: key, roundtripToken: token, value: peersRequest(1, 10000, { host: '192.168.1.2', port: 8888 }) }, { peersRequest: peersRequest(1, 10000, { host: '192.168.1.2', port: 8888 }).json })
request('peers announce, no port', 404, { command: 'peers', target: key, roundtripToken: token, value: peersRequest(1, 0) }, { peersRequest: peersRequest(1, 0).json })
request('peers unannounce', 405, { command: 'peers', id: me, target: key, roundtripToken: token, value: peersRequest(2, 10000) }, { peersRequest: peersRequest(2, 10000).json })
request('peers request, port field absent', 406, { command: 'peers', target: key, value: peersRequest(0) }, { peersRequest: peersRequest(0).json })
request('peers request, unknown type', 407, { command: 'peers', target: key, value: peersRequest(7, 1) }, { peersRequest: peersRequest(7, 1).json })
const withPeers = peersResponse(3, null)
response('peers response with peers and nodes', 400, { id: id(), nodes: nodeList(3), value: withPeers, roundtripToken: token }, { peersResponse: withPeers.json })
const withLocal = peersResponse(2, [{ suffix: [1, 7], port: 8888 }, { suffix: [3, 4], port: 65535 }])
response('peers response with local peers', 401, { id: id(), nodes: nodeList(1), value: withLocal, roundtripToken: token }, { peersResponse: withLocal.json })
const full = peersResponse(150, null)
response('peers response, full: 20 nodes, 150 peers', 402, { id: id(), nodes: nodeList(20), value: full, roundtripToken: token }, { peersResponse: full.json })
response('peers response, no value', 405, { id: id(), nodes: nodeList(2), roundtripToken: token })

// Every field present; application commands.
request('custom command, every field', 500, {
  command: 'kv-put',
  id: me,
  target: id(),
  forwardRequest: peer('1.2.3.4', 5),
  forwardResponse: peer('5.6.7.8', 65535),
  roundtripToken: token,
  value: Buffer.from('hello world')
})
response('custom response, every field', 500, { id: id(), nodes: nodeList(2), value: Buffer.from('a value'), roundtripToken: token })
request('custom command, empty value', 501, { command: 'kv-get', target: id(), value: Buffer.alloc(0) })
request('custom command, unicode name', 502, { command: 'ünïcødé', target: id() })

// Malformed fixed-format fields the reference's encoders happily write.
request('wrong-length id and target', 600, { command: '_find_node', id: invalid(bytes(31)), target: invalid(bytes(33)) })
request('forwardRequest with port 0', 601, { command: '_ping', forwardRequest: invalid(Buffer.from([1, 2, 3, 4, 0, 0])) })
request('forwardResponse of 12 bytes', 602, { command: '_ping', forwardResponse: invalid(peers.encode([{ host: '1.1.1.1', port: 1 }, { host: '2.2.2.2', port: 2 }])) })
response('wrong-length responder id', 603, { id: invalid(bytes(20)), roundtripToken: token })
response('node list with a zero port', 604, { id: id(), nodes: invalid(Buffer.concat([nodeList(1).bytes, bytes(32), Buffer.from([9, 9, 9, 9, 0, 0])])) })

fs.writeFileSync(out, JSON.stringify(fixtures, null, 1) + '\n')
console.log('wrote ' + fixtures.length + ' fixtures to ' + out)
